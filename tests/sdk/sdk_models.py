"""Checks raw JSON against the official SDKs' model classes, so that a field
the simulator or nicip's clients misspell, misplace or mistype fails loudly
instead of becoming the SDK's silent `None`.

Tencent models document each field's type in their docstring; Zenlayer models
list only their keys, so Zenlayer JSON is checked by a deserialize/serialize
round trip that must give back every non-null field.
"""
import re

PYTHON_TYPES = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def tencent_fields(cls):
    """{field: declared type} from a Tencent model's docstring."""
    return dict(re.findall(r":type (\w+): ([^\n]+)", cls.__init__.__doc__ or ""))


def check_tencent(module, cls, value, path, ignore=()):
    """`value` uses only fields `cls` declares, each with the declared type."""
    assert isinstance(value, dict), "%s: expected an object, got %r" % (path, value)
    declared = tencent_fields(cls)
    for key, item in value.items():
        if key in ignore:
            continue
        where = "%s.%s" % (path, key)
        assert key in declared, "%s: not a field of %s (SDK fields: %s)" % (where, cls.__name__, sorted(declared))
        check_tencent_type(module, declared[key].strip(), item, where)


def check_tencent_type(module, declared, value, where):
    if value is None:
        return  # documented as "may be null" throughout
    if declared.startswith("list of "):
        assert isinstance(value, list), "%s: expected a list, got %r" % (where, value)
        for i, item in enumerate(value):
            check_tencent_type(module, declared[len("list of "):], item, "%s[%d]" % (where, i))
    elif declared in PYTHON_TYPES:
        wanted = PYTHON_TYPES[declared]
        ok = isinstance(value, wanted) and not (declared in ("int", "float") and isinstance(value, bool))
        assert ok, "%s: the SDK declares %s, got %r" % (where, declared, value)
    else:
        check_tencent(module, getattr(module, declared.split(".")[-1].strip(":`")), value, where)


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def check_zenlayer(cls, value, path):
    """Every non-null field of `value` survives the SDK model `cls`."""
    model = cls()
    model._deserialize(value)
    kept, sent = model.serialize(), without_nulls(value)
    assert kept == sent, "%s: the SDK's %s drops or changes fields:\n  sent %r\n  kept %r" % (
        path, cls.__name__, sent, kept)
