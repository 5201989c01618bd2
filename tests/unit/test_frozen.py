"""core.frozen.quick_init: the same objects as dataclasses' frozen __init__ makes."""

import dataclasses
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from freshet.core.frozen import quick_init
from freshet.status.model import ConsumerStatus, DatasetStatus
from freshet.status.render import Output


@dataclass(frozen=True)
class Plain:
    a: str
    b: int = 2
    c: tuple[str, ...] = ()
    d: dict[str, int] = field(default_factory=dict)


Quick = quick_init(dataclass(frozen=True)(type("Quick", (), {
    "__annotations__": dict(Plain.__annotations__), "b": 2, "c": (),
    "d": field(default_factory=dict)})))


@pytest.mark.parametrize("args,kwargs", [
    (("x",), {}), (("x", 5), {}), (("x",), {"c": ("y",)}), (("x", 1, ("z",), {"k": 1}), {}),
    ((), {"a": "x", "d": {"n": 2}}),
])
def test_same_fields_as_the_dataclass_init(args, kwargs):
    plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)
    assert dataclasses.asdict(plain) == dataclasses.asdict(quick)
    assert vars(plain) == vars(quick)


def test_each_default_factory_call_makes_a_new_value():
    one, two = Quick("x"), Quick("y")
    assert one.d == {} and one.d is not two.d


def test_still_frozen_compared_and_replaced():
    quick = Quick("x", 3)
    with pytest.raises(FrozenInstanceError):
        quick.a = "y"  # type: ignore[misc]
    assert quick == Quick("x", 3) != Quick("x", 4)
    assert dataclasses.replace(quick, b=9) == Quick("x", 9)
    assert repr(quick) == "Quick(a='x', b=3, c=(), d={})"


def test_the_argument_errors_are_pythons():
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Quick()
    with pytest.raises(TypeError, match="unexpected keyword argument 'e'"):
        Quick("x", e=1)
    with pytest.raises(TypeError, match="multiple values for argument 'a'"):
        Quick("x", a="y")


A = {"a": int}


@pytest.mark.parametrize("make", [
    lambda: dataclass(type("Mutable", (), {"__annotations__": {"a": int}})),
    lambda: dataclass(frozen=True, slots=True)(type("Slotted", (), {"__annotations__": A})),
    lambda: dataclass(frozen=True)(type("Post", (), {"__annotations__": {"a": int},
                                                      "__post_init__": lambda self: None})),
    lambda: dataclass(frozen=True)(type("NoInit", (), {"__annotations__": {"a": int},
                                                        "a": field(init=False, default=1)})),
    lambda: dataclass(frozen=True, kw_only=True)(type("KwOnly", (), {"__annotations__": A})),
    lambda: dataclass(frozen=True)(type("Self", (), {"__annotations__": {"self": int}})),
    lambda: type("NotADataclass", (), {}),
])
def test_refuses_what_it_cannot_do_the_same(make):
    with pytest.raises(TypeError):
        quick_init(make())


def test_the_page_models_use_it():
    assert DatasetStatus.__init__.__module__ == "freshet.status.model"
    assert "__dict__" in DatasetStatus.__init__.__code__.co_names
    consumer = ConsumerStatus("c", "C", "page", "", "fresh", "ok", ())
    assert consumer.deadline_counts == {} and consumer.owner == ""
    assert Output(b"x", "text/plain").dated is False
    assert hash(Output(b"x", "text/plain")) == hash(Output(b"x", "text/plain", False))
