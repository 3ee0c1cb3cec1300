"""The typed error tree: every class exported, drawn in the module docstring, and catchable as its legacy base."""

import pickle

import pytest

import xreplay
from xreplay import errors

CLASSES = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_documented_and_drawn_in_the_tree(cls):
    assert issubclass(cls, errors.XReplayError)
    assert cls.__doc__ and cls.__name__ in errors.__doc__


INPUT_ERRORS = [n for n in errors.__all__ if not n.startswith(("Checkpoint", "Dataset", "Untrusted"))]


@pytest.mark.parametrize("name", INPUT_ERRORS)
def test_the_errors_of_bad_input_are_exported_at_the_top_level(name):
    assert getattr(xreplay, name) is getattr(errors, name)


@pytest.mark.parametrize(
    ("cls", "legacy"),
    [
        (errors.ArgumentError, (ValueError, TypeError)),
        (errors.ArgumentAssertionError, (AssertionError, ValueError)),
        (errors.DeviceError, (RuntimeError, ValueError)),
        (errors.FieldTypeError, (TypeError, ValueError)),
        (errors.FieldShapeIndexError, (IndexError, ValueError)),
        (errors.FieldShapeRuntimeError, (RuntimeError, ValueError)),
        (errors.FieldValueRuntimeError, (RuntimeError, ValueError)),
        (errors.InsufficientDataAssertionError, (AssertionError, ValueError)),
        (errors.UnknownFieldValueError, (KeyError, ValueError)),
        (errors.UnknownIndexError, (KeyError,)),
        (errors.InvalidIndexError, (IndexError,)),
        (errors.CapacityError, (MemoryError, RuntimeError)),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_errors_keep_the_classes_legacy_callers_catch(cls, legacy):
    error = cls("field 'obs': expected 3 values, received 2")
    for base in legacy:
        assert isinstance(error, base)
    assert str(error) == "field 'obs': expected 3 values, received 2"  # KeyError subclasses do not quote it
    assert type(pickle.loads(pickle.dumps(error))) is cls  # errors cross process boundaries (Ray, workers)
