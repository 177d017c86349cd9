"""Who may see the dashboard, and whether it may write.

* **Sign-in (optional).** With an ``[auth]`` section in ``.streamlit/secrets.toml`` (Streamlit's
  built-in OpenID Connect: ``redirect_uri``, ``cookie_secret``, then ``client_id``,
  ``client_secret``, ``server_metadata_url`` directly under ``[auth]`` or per provider under
  ``[auth.<name>]``), every page asks for sign-in and shows no data until ``st.user`` says the
  viewer is logged in. Without ``[auth]`` the dashboard is open, as before (put it behind your
  own proxy, or configure ``[auth]``). See ``.streamlit/secrets.example.toml`` and the README.
* **Read-only by default.** Buttons that write to the store (re-verify) only appear with
  ``[dashboard] allow_actions = true`` in the config file (``Config.dashboard_allow_actions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from dashboard.components.common import md_escape


def auth_section() -> Mapping[str, Any] | None:
    """The ``[auth]`` section of the app's secrets, or None when sign-in is not configured."""
    try:
        section = st.secrets.get("auth")
    except Exception:  # noqa: BLE001 - no secrets.toml at all: sign-in not configured
        return None
    return section if isinstance(section, Mapping) and section else None


def providers(section: Mapping[str, Any]) -> list[str]:
    """Named providers (``[auth.<name>]`` tables); empty when the provider sits under ``[auth]``."""
    return [name for name, value in section.items() if isinstance(value, Mapping)]


def signed_in() -> bool:
    try:
        return bool(st.user.get("is_logged_in"))
    except Exception:  # noqa: BLE001 - no run context (bare mode): nobody is signed in
        return False


def signed_in_or_prompt() -> bool:
    """True when the page may show data: no sign-in configured, or the viewer is signed in.

    Otherwise draws a sign-in prompt (one button per configured provider) and returns False:
    the caller stops before any page reads the store or Prometheus.
    """
    section = auth_section()
    if section is None or signed_in():
        return True
    st.title("Deploy verification")
    st.info("Sign in to see deploys, verdicts and metrics. This dashboard only shows data to "
            "signed-in users (configured under [auth] in .streamlit/secrets.toml).",
            icon=":material/lock:")
    names = providers(section)
    if not names:
        st.button("Sign in", key="login", type="primary", on_click=st.login)
    for name in names:
        st.button(f"Sign in with {name}", key=f"login_{name}", type="primary", on_click=st.login, args=(name,))
    return False


def sign_out_button() -> None:
    """Who is signed in, and a sign-out button, in the sidebar (only when sign-in is configured)."""
    if auth_section() is None or not signed_in():
        return
    who = st.user.get("email") or st.user.get("name") or "signed in"
    st.sidebar.caption(f"Signed in as {md_escape(who)}")
    st.sidebar.button("Sign out", key="logout", on_click=st.logout)


def actions_allowed(config: Any) -> bool:
    """Whether buttons that write (re-verify) are offered: ``[dashboard] allow_actions = true``."""
    return bool(getattr(config, "dashboard_allow_actions", False))
