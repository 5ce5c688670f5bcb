"""The shared mocks harness for infrastructure tests; it lives in `preview.graph` because the offline preview
command records the same graph."""

from preview.graph import (  # noqa: F401
    ACCOUNT_ID,
    GENERATED_SECRET,
    PROJECT,
    ROOT,
    ClinicMocks,
    Graph,
    GraphRecorder,
    Registration,
    evaluate,
    evaluate_program,
    pushed_digest,
    stack_config,
    stack_settings,
)
