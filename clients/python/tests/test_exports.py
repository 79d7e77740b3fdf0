"""The public surface is exactly ``__all__``: sorted, complete, and free of generated types."""

import inspect

import bolt_client


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in bolt_client.__all__ if n != "__version__"]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(bolt_client.__all__)) == len(bolt_client.__all__)


def test_all_names_exist_and_public_names_are_listed() -> None:
    for name in bolt_client.__all__:
        assert hasattr(bolt_client, name), name
    public = {n for n in dir(bolt_client) if not n.startswith("_")}
    assert public == set(bolt_client.__all__) - {"__version__"}


def test_exported_objects_belong_to_the_package() -> None:
    for name in bolt_client.__all__:
        obj = getattr(bolt_client, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("bolt_client."), (name, obj.__module__)
            assert "_proto" not in obj.__module__, name


def test_exception_tree() -> None:
    from bolt_client import (
        BoltError, ConfigError, DeadlineExceededError, InvalidArgumentError, NotFoundError,
        PermissionDeniedError, RequestError, TLSError, TransportError, UnavailableError,
    )

    assert issubclass(TransportError, BoltError) and issubclass(RequestError, BoltError)
    assert issubclass(UnavailableError, TransportError) and issubclass(DeadlineExceededError, TransportError)
    assert issubclass(TLSError, UnavailableError)
    for cls in (InvalidArgumentError, NotFoundError, PermissionDeniedError):
        assert issubclass(cls, RequestError)
    assert issubclass(ConfigError, BoltError)


def test_py_typed_is_shipped() -> None:
    from pathlib import Path

    assert (Path(bolt_client.__file__).parent / "py.typed").exists()
