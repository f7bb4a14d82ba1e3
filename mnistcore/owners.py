"""Who owns a run and who may change it: the engine side of sign-in. No Streamlit here.

A signed-in person is identified by their provider's stable (issuer, subject) pair, never by the email
alone (emails change and can be reassigned); the email is kept only to be shown. Code that acts for a
person passes an `Actor`; `None` instead of an Actor means the single-user setting (the command line, or a
dashboard on loopback without sign-in), where everything is allowed and nothing is owned.

The rules (`may_change`): a run may be renamed, deleted or continued by its owner, or by an instructor;
a run with no owner (trained on the command line or before sign-in was configured) only by an
instructor. Everyone signed in may look at every run. Drawings are private: their collection is named
after `Owner.key`, which nobody else's identity yields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

MAX_CLAIM_CHARS = 512  # an issuer URL, a subject or an email; longer is not a real identity


class NotAllowedError(PermissionError):
    """The actor may not do this to someone else's work; the message says whose it is and who may."""


class QuotaError(ValueError):
    """Saving this would pass the person's quota; the message says how many they have and what to do."""


def _claim(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS or not value.isprintable():
        raise ValueError(f"{what} must be 1-{MAX_CLAIM_CHARS} printable characters, got {value!r}")
    return value


@dataclass(frozen=True)
class Owner:
    """A signed-in person: their provider's issuer and subject (the identity) and their email (shown)."""

    issuer: str
    subject: str
    email: str | None = None

    def __post_init__(self) -> None:
        _claim(self.issuer, "issuer")
        _claim(self.subject, "subject")
        if self.email is not None:
            _claim(self.email, "email")

    @property
    def key(self) -> str:
        """A stable id for folder and registry names: a hash of (issuer, subject), 32 hex digits."""
        return hashlib.sha256(f"{self.issuer}\n{self.subject}".encode()).hexdigest()[:32]

    @property
    def display(self) -> str:
        """What the pages and `runs --json` show: the email, else the subject."""
        return self.email or self.subject

    def same_person(self, other: Owner | None) -> bool:
        """True when `other` is this person (same issuer and subject; the email may have changed)."""
        return other is not None and (self.issuer, self.subject) == (other.issuer, other.subject)

    def record(self) -> dict[str, str | None]:
        """The owner as stored in meta.json: {"iss", "sub", "email"}."""
        return {"iss": self.issuer, "sub": self.subject, "email": self.email}

    @classmethod
    def from_record(cls, record: Any) -> Owner | None:
        """An owner read back from meta.json (None for no owner); ValueError for anything malformed."""
        if record is None:
            return None
        if not isinstance(record, dict):
            raise ValueError(f"owner must be an object, got {type(record).__name__}")
        return cls(record.get("iss"), record.get("sub"), record.get("email"))  # type: ignore[arg-type]

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Owner:
        """The owner from an OpenID Connect ID token's claims (`iss`, `sub`, optional `email`)."""
        email = claims.get("email")
        return cls(claims.get("iss"), claims.get("sub"), email if isinstance(email, str) and email else None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Actor:
    """Someone acting on a server with sign-in: the person (None: signed out), and their rights and quotas."""

    owner: Owner | None
    instructor: bool = False
    max_runs: int | None = None  # saved runs this person may own (None: no limit)
    max_drawings: int | None = None  # drawings this person may keep (None: the store's own cap)

    @property
    def display(self) -> str:
        return self.owner.display if self.owner is not None else "a signed-out visitor"


def may_change(actor: Actor | None, owner: Owner | None) -> bool:
    """May `actor` rename, delete or continue work owned by `owner`? (None actor: single-user, always.)"""
    if actor is None or actor.instructor:
        return True
    return actor.owner is not None and actor.owner.same_person(owner)


def check_change(actor: Actor | None, owner: Owner | None, action: str, what: str) -> None:
    """Raise NotAllowedError with a clear message unless `actor` may `action` (e.g. "delete") `what`."""
    if may_change(actor, owner):
        return
    assert actor is not None  # may_change allows every action without an actor
    if actor.owner is None:
        raise NotAllowedError(f"Sign in to {action} {what}.")
    if owner is None:
        why = "it has no owner (trained on the command line or before sign-in), so only an instructor can"
    else:
        why = f"it is {owner.display}'s, and only its owner or an instructor can"
    raise NotAllowedError(f"You cannot {action} {what}: {why} {action} it. Nothing was changed.")
