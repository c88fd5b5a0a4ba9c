"""The registry is complete, and every constructor argument survives get_config/from_config."""

import inspect
import json

import keras
import pytest

from tests.contract import registry
from tests.contract.registry import CASES, EXCLUDED, case_ids


def test_every_public_loss_and_metric_has_a_contract_case():
    discovered = registry.discover()
    covered = {case.cls.__name__ for case in CASES}
    missing = sorted(set(discovered) - covered - set(EXCLUDED))
    assert not missing, (
        f"{missing} have no contract case: add at least one Case to tests/contract/registry.py "
        "(or, with a reason, to EXCLUDED)."
    )
    stale = sorted((covered | set(EXCLUDED)) - set(discovered))
    assert not stale, f"{stale} are in the registry but not public in keras_topk.losses/metrics."
    # The discovery itself must see the package's classes.
    assert {
        "SmoothTopKSVM",
        "TopKSVM",
        "TopKCrossEntropy",
        "TopKTransitionLoss",
        "TopKAccuracy",
        "MultiTopKAccuracy",
        "TransitionState",
    } <= set(discovered)


def test_every_class_trains_in_the_default_run():
    classes = {c.cls for c in CASES}
    assert classes == {c.cls for c in CASES if c.default_run}


def _constructor_arguments(cls):
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


@pytest.mark.parametrize(
    "cls", sorted({c.cls for c in CASES}, key=lambda c: c.__name__), ids=lambda c: c.__name__
)
def test_cases_give_every_constructor_argument_a_non_default_value(cls):
    arguments = _constructor_arguments(cls)
    cases = [c for c in CASES if c.cls is cls]
    unexercised = [
        name
        for name, default in arguments.items()
        if not any(name in c.kwargs and c.kwargs[name] != default for c in cases)
    ]
    assert not unexercised, (
        f"No contract case of {cls.__name__} sets {unexercised} to a non-default value, so "
        "their get_config round trip is not checked."
    )


def _normalise(value):
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_get_config_round_trip(case):
    obj = case.make()
    config = obj.get_config()
    for name, value in case.kwargs.items():
        assert name in config, f"get_config() of {case.cls.__name__} lacks `{name}`"
        assert _normalise(config[name]) == _normalise(value), name
    clone = case.cls.from_config(config)
    assert type(clone) is case.cls
    assert clone.get_config() == config
    # Through JSON, as in a .keras file, with no custom_objects.
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is case.cls and revived.get_config() == config


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_registered_name_and_identifiers(case):
    # Keras resolves bare strings ("sparse_categorical_crossentropy") only for
    # its own objects; a plugin's objects are found by their registered name,
    # in a config dict or through `deserialize`.
    name = keras.saving.get_registered_name(case.cls)
    assert name == f"keras_topk>{case.cls.__name__}"
    assert keras.saving.get_registered_object(name) is case.cls
    module = keras.losses if case.is_loss else keras.metrics
    config = case.make().get_config()
    obj = module.get({"class_name": name, "config": config})
    assert type(obj) is case.cls and obj.get_config() == config
    assert module.deserialize(name) is case.cls
