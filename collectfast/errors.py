"""What a failed request means for a deploy: worth another try, or a cause that concerns every file.

Each backend module registers a classifier for its SDK's errors, so this module
imports none of them: an error from an SDK that was never imported cannot occur.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Diagnosis:
    #: Another attempt may succeed (throttling, 5xx, a dropped connection).
    transient: bool = False
    #: Set when the cause concerns every file (credentials, bucket, endpoint, configuration).
    shared_cause: str | None = None
    #: How many failures with that cause stop the run: some (access denied) may be about one key only.
    stop_after: int = 1
    #: The cause and the fix, in words, for a shared cause.
    explanation: str | None = None


#: ``classifier(error, storage)``: a Diagnosis for the errors it knows, else None.
Classifier = Callable[[BaseException, Any], "Diagnosis | None"]

_classifiers: list[Classifier] = []


def register(classifier: Classifier) -> None:
    if classifier not in _classifiers:
        _classifiers.append(classifier)


def diagnose(error: BaseException, storage: Any = None) -> Diagnosis:
    if isinstance(error, ImproperlyConfigured):
        return Diagnosis(shared_cause="configuration", explanation=str(error))
    for classifier in _classifiers:
        diagnosis = classifier(error, storage)
        if diagnosis is not None:
            return diagnosis
    if isinstance(error, ConnectionRefusedError):
        return Diagnosis(transient=True, shared_cause="endpoint", stop_after=3, explanation=str(error))
    return Diagnosis()


def is_transient(error: BaseException) -> bool:
    return diagnose(error).transient
