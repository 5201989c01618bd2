"""A frozen dataclass whose __init__ fills the instance's __dict__ directly.

dataclasses' frozen __init__ sets each field through object.__setattr__ (its own
__setattr__ refuses), a call per field: three times what a plain __init__ costs. A page
build makes some 30,000 frozen objects (a DatasetStatus has 28 fields), so that was a
twentieth of it. attrs makes its frozen classes' __init__ the same way (its
`_inst_dict = self.__dict__`). Everything else (the frozen __setattr__, __eq__,
__hash__, __repr__, fields, replace) stays dataclasses'.
"""

import dataclasses
from typing import TypeVar

T = TypeVar("T", bound=type)

_FACTORY = object()  # a field's default made by its default_factory at each call


def quick_init(cls: T) -> T:
    """Replace a frozen dataclass's __init__ by one with the same parameters and
    defaults that writes `self.__dict__`. Only for what it can do the same: a frozen,
    non-slotted dataclass without __post_init__, InitVar, init=False or kw_only fields."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses with a __dict__")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init cannot run __post_init__")
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) != len(cls.__dataclass_fields__) or any(
            not f.init or f.kw_only for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}: quick_init takes plain fields only")
    # Its own names are spelled as dataclasses spells its own (no field is called so).
    scope: dict[str, object] = {"__quick_factory__": _FACTORY}
    args, values = [], []
    for f in dataclasses.fields(cls):
        value = f.name
        if f.name == "self" or f.name.startswith("__quick_"):
            raise TypeError(f"{cls.__name__}: quick_init takes no field named {f.name}")
        if f.default is not dataclasses.MISSING:
            scope[f"__quick_default_{f.name}__"] = f.default
            args.append(f"{f.name}=__quick_default_{f.name}__")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"__quick_factory_{f.name}__"] = f.default_factory
            args.append(f"{f.name}=__quick_factory__")
            value = (f"__quick_factory_{f.name}__() if {f.name} is __quick_factory__ "
                     f"else {f.name}")
        else:
            args.append(f.name)
        values.append(f"    __quick_dict__[{f.name!r}] = {value}")
    source = "\n".join([f"def __init__(self, {', '.join(args)}):",
                         "    __quick_dict__ = self.__dict__", *values])
    exec(source, scope)  # noqa: S102  (names and defaults of the class's own fields)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init
    return cls
