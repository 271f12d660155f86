"""Shared fixtures: the real models (loaded once per test session) and the caller recordings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
CALLS = FIXTURES / "calls"


@pytest.fixture(scope="session")
def calls_manifest() -> dict:
    """Where each utterance of each fixture call starts and ends (caller-side truth)."""
    return json.loads((CALLS / "calls.json").read_text())


@pytest.fixture(scope="session")
def settings():
    from voice.app.settings import IvrSettings

    return IvrSettings()


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """A seeded CRM (200 customers and the demo caller) in a file of the module's own."""
    from handoff.crm import CrmStore, seed

    store = CrmStore(f"sqlite:///{tmp_path_factory.mktemp('crm')}/crm.sqlite")
    seed(store, customers=200)
    return store


@pytest.fixture(scope="module")
def classifier():
    """The intent classifier trained on the shipped menu, with the real MiniLM encoder."""
    from intents.classifier import IntentClassifier
    from intents.config import load_menu
    from models.registry import shared_registry

    return IntentClassifier(shared_registry().embedder()).fit(*load_menu().training_data())


@pytest.fixture(scope="session")
def engines(settings):
    from voice.engines import shared_engines

    return shared_engines(settings)


def pytest_configure(config) -> None:
    """pipecat logs every frame link at DEBUG; keep test output to what matters."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


@pytest.fixture
def caplog_loguru():
    """Everything the IVR logs during a test, at every level."""
    import io

    from loguru import logger

    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG")
    yield sink
    logger.remove(handler)


# A throwaway PostgreSQL cluster (tests/postgres.py): postgres_cluster, postgres_url,
# fresh_postgres_db.
from postgres import fresh_postgres_db, postgres_cluster, postgres_url  # noqa: E402, F401
