"""Which HTTP status each of the router's errors is answered with: decided at the edge only."""

from __future__ import annotations

import pytest

from architect.router import errors
from architect.router.web import http_status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest("x"), 400),
        (errors.Forbidden("x"), 403),
        (errors.NotFound("x"), 404),
        (errors.UnknownAgent("x"), 404),
        (errors.MethodNotAllowed("x"), 405),
        (errors.Refused("x"), 409),
        (errors.TooLarge("x"), 413),
        (errors.InsufficientStorage("x"), 507),
        (errors.NoBackend("x"), 503),
        (errors.Draining("x"), 503),
        (errors.BackendTimeout("x"), 504),
        (errors.RouterError("x"), 500),
    ],
)
def test_each_router_error_has_its_status(error: errors.RouterError, status: int) -> None:
    assert http_status(error) == status


def test_every_error_class_of_the_router_is_mapped() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.RouterError)
    ]
    assert len(classes) == 13
    unmapped = [cls.__name__ for cls in classes if http_status(cls("x")) == 500]
    assert unmapped == ["RouterError"]
