"""Settings.from_env: where the warehouse lives (METRICS_WAREHOUSE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics_pipeline.settings import Settings


@pytest.fixture(autouse=True)
def _home(monkeypatch, tmp_path):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METRICS_WAREHOUSE", raising=False)


def test_the_default_warehouse_is_a_folder_under_the_home(tmp_path):
    settings = Settings.from_env()
    assert settings.warehouse_root == tmp_path / "home" / "warehouse"
    assert settings.warehouse_location == str(settings.warehouse_root)


def test_a_folder_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("METRICS_WAREHOUSE", str(tmp_path / "elsewhere"))
    settings = Settings.from_env()
    assert settings.warehouse_root == tmp_path / "elsewhere"
    assert settings.warehouse_location == str(tmp_path / "elsewhere")


def test_a_bucket_keeps_this_hosts_files_under_the_home(monkeypatch, tmp_path):
    monkeypatch.setenv("METRICS_WAREHOUSE", "s3://shared/warehouse")
    settings = Settings.from_env()
    assert settings.warehouse_location == "s3://shared/warehouse"
    assert settings.warehouse_root == tmp_path / "home" / "warehouse"


def test_another_scheme_is_refused(monkeypatch):
    monkeypatch.setenv("METRICS_WAREHOUSE", "gs://shared/warehouse")
    with pytest.raises(ValueError, match="folder or s3://"):
        Settings.from_env()


def test_rebuild_aside_stays_local_whatever_the_environment(monkeypatch, tmp_path):
    import dataclasses

    monkeypatch.setenv("METRICS_WAREHOUSE", str(tmp_path / "elsewhere"))
    aside = dataclasses.replace(Settings.from_env(), warehouse_dir=Path(tmp_path / "building"))
    assert aside.warehouse_location == str(tmp_path / "building")
