"""The receiver's settings: one object, precedence flags > environment > config, checked once."""

from __future__ import annotations

import pytest

from analyzers.config import config_from_dict
from analyzers.errors import ConfigError
from analyzers.server.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_flags_win_over_environment_which_wins_over_the_config() -> None:
    cfg = config_from_dict({"receiver": {"read_token_env": "MY_TOKEN", "body_timeout": "30s", "max_inflight": 8},
                            "store": {"url": "sqlite:///from-config.db"}})
    env = {"MY_TOKEN": "token-from-config-variable", "DEPLOY_WEBHOOK_SECRET": SECRET}
    s = Settings.build(config=cfg, env=env)
    assert s.read_token == "token-from-config-variable" and s.body_timeout_s == 30 and s.max_inflight == 8
    assert s.store_url == "sqlite:///from-config.db" and s.secrets == (SECRET,)
    s = Settings.build(config=cfg, env={**env, "DEPLOY_READ_TOKEN": "token-from-env"})
    assert s.read_token == "token-from-env"
    s = Settings.build(config=cfg, env=env, read_token="token-from-flag", body_timeout_s=2.0,
                       store_url="sqlite:///flag.db")
    assert (s.read_token, s.body_timeout_s, s.store_url) == ("token-from-flag", 2.0, "sqlite:///flag.db")


def test_a_config_naming_an_unset_token_variable_fails_at_start() -> None:
    cfg = config_from_dict({"receiver": {"read_token_env": "NOT_SET_ANYWHERE"}})
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        Settings.build(config=cfg, env={})


@pytest.mark.parametrize(("kw", "names"), [
    ({"max_inflight": 0}, "max_inflight"),
    ({"max_body_reads": -1}, "max_body_reads"),
    ({"body_timeout_s": 0}, "body_timeout"),
    ({"header_timeout_s": 7200}, "header_timeout"),
    ({"port": 70000}, "port"),
    ({"log_level": "chatty"}, "log level"),
])
def test_bad_values_are_refused_naming_the_setting(kw: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.build(env={}, **kw)


def test_unknown_receiver_keys_and_sources_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        Settings.build(config=config_from_dict({"receiver": {"read_token": "inline-secret"}}), env={})
    with pytest.raises(ConfigError, match="unknown sources"):
        Settings.build(env={}, allow_unsigned={"jenkins"})


def test_settings_travel_to_worker_processes_whole_and_never_print_a_secret() -> None:
    s = Settings.build(env={"DEPLOY_WEBHOOK_SECRET": SECRET, "DEPLOY_WEBHOOK_SECRET_GITHUB": "gh-secret",
                            "ANALYZERS_WORKER": "1", "ANALYZERS_WORKER_POLL": "0.5"},
                       allow_unsigned={"argocd"}, metric_keys=["error_ratio"], read_token="read-token-value")
    assert s.worker and s.worker_poll_s == 0.5
    assert Settings.from_json(s.to_json()) == s
    text = repr(s)
    for secret in (SECRET, "gh-secret", "read-token-value"):
        assert secret not in text
