"""The password policy: long enough, not a common password, not the email. Its lists ship with the `zxcvbn` package
(Dropbox's estimator, its Python port): nothing is fetched at run time."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 12
MAX_LENGTH = 128
# zxcvbn refuses longer input (its matching is quadratic); the first 72 characters decide.
_ESTIMATED_LENGTH = 72
# zxcvbn's score 3: "safely unguessable", about 10^8 guesses or more, even with the hash stolen.
MIN_SCORE = 3
COMMON = frozenset(FREQUENCY_LISTS["passwords"])  # the 30,000 most common passwords of leaked password sets


def password_problem(password: str, email: str) -> str | None:
    """What is wrong with `password` for the account `email` (a sentence naming the rule), or None."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        return f"must have {MIN_LENGTH} to {MAX_LENGTH} characters"
    lowered, address = password.lower(), email.lower()
    local = address.split("@")[0]
    if address in lowered or (len(local) >= 3 and local in lowered):
        return "must not contain the email address or its part before the @"
    if lowered in COMMON:
        return "is one of the 30,000 most common passwords; choose another"
    estimate = zxcvbn(password[:_ESTIMATED_LENGTH], user_inputs=[address, local])
    if estimate["score"] < MIN_SCORE:
        why = (estimate["feedback"]["warning"] or "common words, names, dates or keyboard patterns").rstrip(".")
        return f"is too easy to guess ({why[:1].lower()}{why[1:]}); a few unrelated words make a strong one"
    return None


def check_password(password: str, email: str, field: str = "password") -> None:
    """Raises a 422 naming `field` and the rule when `password` may not be used (the app's validation error shape)."""
    if problem := password_problem(password, email):
        raise RequestValidationError([{"loc": ("body", field), "msg": f"password {problem}", "type": "value_error"}])
