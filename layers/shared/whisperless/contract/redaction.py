"""The redaction and sentiment request parameters: which entity types may be asked for, and how
``redact`` / ``redactionOutput`` read. Light on purpose (the API validates with it from its zip
layer); the engine's ``engine.redact`` finds the entities with Presidio.

The type names are Presidio's. A test keeps this list inside what the loaded analyzer supports.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameter

#: What ``redact=pii`` means (as Amazon Transcribe's ``ALL``): the personal identifiers.
PII_ENTITIES = (
    "PERSON",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "US_SSN",
    "US_BANK_NUMBER",
    "US_DRIVER_LICENSE",
    "US_PASSPORT",
    "US_ITIN",
    "IBAN_CODE",
    "IP_ADDRESS",
    "LOCATION",
    "CRYPTO",
    "MEDICAL_LICENSE",
    "UK_NHS",
)
#: Also accepted when named: not identifiers by themselves, and frequent in ordinary speech
#: ("see you on Monday"), so ``pii`` leaves them out.
OTHER_ENTITIES = ("DATE_TIME", "NRP", "URL", "MAC_ADDRESS")
SUPPORTED_ENTITIES = PII_ENTITIES + OTHER_ENTITIES
#: Found by spaCy's English model (named-entity recognition), not by a pattern: English only.
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "DATE_TIME"})

ALL_PII = "pii"
REDACTION_OUTPUTS = ("redacted", "redacted_and_unredacted")


def parse_entities(value: Any, field: str = "redact") -> tuple[str, ...]:
    """``pii`` or a comma-separated list of entity types -> the types, in a stable order."""
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    if not names:
        raise InvalidParameter(f"{field} must be {ALL_PII!r} or a comma-separated list of entity types", field=field)
    chosen: set[str] = set()
    for name in names:
        if name.lower() == ALL_PII:
            chosen.update(PII_ENTITIES)
            continue
        upper = name.upper()
        if upper not in SUPPORTED_ENTITIES:
            raise InvalidParameter(
                f"{field}: unknown entity type {name!r}; use {ALL_PII!r} or any of {', '.join(SUPPORTED_ENTITIES)}",
                field=field,
            )
        chosen.add(upper)
    return tuple(name for name in SUPPORTED_ENTITIES if name in chosen)


def parse_redaction_output(value: Any, field: str = "redactionOutput") -> str:
    text = str(value).strip().lower()
    if text not in REDACTION_OUTPUTS:
        raise InvalidParameter(f"{field} must be one of {', '.join(REDACTION_OUTPUTS)}, got {value!r}", field=field)
    return text
