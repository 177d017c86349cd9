"""The deploy page shows no webhook token, even for a delivery error stored before redaction
existed, and no credential from an error banner (AppTest, real SQLite store)."""

from __future__ import annotations

from datetime import UTC, datetime

from streamlit.testing.v1 import AppTest

from analyzers.errors import PrometheusUnreachable
from analyzers.events.store import open_store
from dashboard.components.common import explain_error
from tests.app.conftest import APP, StoreData

TOKEN = "kT9xQ2vWmZ8rYbN3cL5pJ7dF"


def test_an_old_delivery_error_with_a_webhook_token_is_shown_redacted(store_data: StoreData) -> None:
    store = open_store(store_data.url)
    try:  # as the receiver stored it before errors were redacted
        store.save_delivery(
            "dep-regression", datetime.now(UTC), "oncall",
            {"target": "oncall", "kind": "chat", "ok": False, "attempts": 4, "status_code": None,
             "error": "ConnectionError: HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries exceeded "
                      f"with url: /services/T0123ABCD/B0456EFGH/{TOKEN}",
             "at": datetime.now(UTC).isoformat(), "overall": "fail"},
        )
    finally:
        store.close()
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["deploy"] = "dep-regression"
    at.run()
    assert not at.exception
    deliveries = next(df.value for df in at.dataframe if "target" in df.value.columns)
    shown = " ".join(str(v) for v in deliveries.iloc[0].tolist())
    assert "hooks.slack.com" in shown and TOKEN not in shown and "B0456EFGH" not in shown


def test_error_banners_show_no_credentials() -> None:
    exc = PrometheusUnreachable("cannot reach Prometheus at http://127.0.0.1:9/select/t3nantKEY0123456789/prometheus")
    text = explain_error(exc, what="Loading the deploy")
    assert "t3nantKEY0123456789" not in text and "redacted" in text and "/select/" in text
