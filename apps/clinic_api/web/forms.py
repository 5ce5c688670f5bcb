"""Reading a posted form into a pydantic model: `form = await read_form(request, SomeModel)`.

`form.data` is the validated model (None when anything is wrong), `form.errors` maps each field to a message in the
user's language, `form.values` keeps what was typed so the page shows it again. A rule broken in the shared logic
(an HTTPException from the API's functions) goes to `form.error(field, message)` (`field=""`: the top of the form)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import UploadFile
from starlette.requests import Request

from clinic_api.web.csrf import FIELD as CSRF_FIELD
from clinic_api.web.i18n import N_, Translator, translator

M = TypeVar("M", bound=BaseModel)

# pydantic's error types -> messages (placeholders from the error's context).
MESSAGES = {
    "missing": N_("This field is required."),
    "string_too_short": N_("Enter at least %(min_length)s characters."),
    "string_too_long": N_("Enter at most %(max_length)s characters."),
    "string_pattern_mismatch": N_("Enter a value in the expected format."),
    "int_parsing": N_("Enter a whole number."),
    "int_from_float": N_("Enter a whole number."),
    "float_parsing": N_("Enter a number."),
    "decimal_parsing": N_("Enter a number."),
    "greater_than": N_("Enter a value greater than %(gt)s."),
    "greater_than_equal": N_("Enter a value of at least %(ge)s."),
    "less_than": N_("Enter a value less than %(lt)s."),
    "less_than_equal": N_("Enter a value of at most %(le)s."),
    "date_parsing": N_("Enter a valid date."),
    "date_from_datetime_parsing": N_("Enter a valid date."),
    "date_future": N_("Enter a date in the future."),
    "date_past": N_("Enter a date in the past."),
    "datetime_parsing": N_("Enter a valid date and time."),
    "datetime_from_date_parsing": N_("Enter a valid date and time."),
    "time_parsing": N_("Enter a valid time."),
    "bool_parsing": N_("Choose yes or no."),
    "literal_error": N_("Choose one of the options."),
    "enum": N_("Choose one of the options."),
    "too_short": N_("Choose at least %(min_length)s."),
    "too_long": N_("Choose at most %(max_length)s."),
}
INVALID = N_("Enter a valid value.")
EMAIL = N_("Enter a valid email address, like name@example.com.")


@dataclass
class Form(Generic[M]):
    data: M | None
    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, name: str, message: str) -> None:
        """Adds a message next to field `name` ("" for one at the top of the form); the form is no longer valid."""
        self.errors.setdefault(name, message)
        self.data = None

    @property
    def valid(self) -> bool:
        return self.data is not None and not self.errors


def message(error: ErrorDetails, t: Translator) -> str:
    """A validation error in the user's language. A custom validator's message (a ValueError, as the API's schemas
    raise) is shown translated when a catalog has it, else as a generic message in the user's language."""
    kind = error["type"]
    context = {k: v for k, v in (error.get("ctx") or {}).items() if isinstance(v, (int, float, str))}
    if kind == "value_error":
        text = str((error.get("ctx") or {}).get("error", ""))
        if "email address" in error["msg"]:  # pydantic's EmailStr
            return t.gettext(EMAIL)
        translated = t.gettext(text) if text else ""
        if text and (translated != text or t.language == "en"):
            return translated
        return t.gettext(INVALID)
    template = MESSAGES.get(kind)
    if template is None:
        return t.gettext(INVALID)
    try:
        return t.gettext(template, **context)
    except (KeyError, TypeError, ValueError):
        return t.gettext(INVALID)


def _is_list(model: type[BaseModel], name: str) -> bool:
    info = model.model_fields.get(name)
    return info is not None and get_origin(info.annotation) in (list, set, tuple, frozenset)


async def read_form(request: Request, model: type[M]) -> Form[M]:
    """The posted form validated by `model`. Empty inputs count as not given (a model's default, or "required");
    a field given several times (checkboxes) becomes a list; files are passed as UploadFile."""
    posted = await request.form()
    values: dict[str, Any] = {}
    for key in posted:
        if key == CSRF_FIELD:
            continue
        items = posted.getlist(key)
        values[key] = items if len(items) > 1 or _is_list(model, key) else items[0]
    data = {
        k: v
        for k, v in values.items()
        if not (v == "" or (isinstance(v, UploadFile) and not v.filename))  # an empty file input sends no name
    }
    shown = {k: v for k, v in values.items() if isinstance(v, (str, list))}
    try:
        return Form(model.model_validate(data), shown)
    except ValidationError as invalid:
        t = translator(request)
        form: Form[M] = Form(None, shown)
        for error in invalid.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            form.error(name, message(error, t))
        return form
