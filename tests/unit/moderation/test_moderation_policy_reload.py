import os

from services.moderation.policy.load import PolicyStore, built_in_policy

ACME = "version: acme-{v}\ncategories:\n  spam: {{threshold: 0.{t}, severity: medium}}\n"
DEFAULT = "version: folder-default-1\ncategories:\n  threat: {threshold: 0.5, severity: high}\n"


def bump(path, seconds=10):
    """Moves the file's mtime on, as a later write would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_reload_lifecycle(tmp_path):
    acme = tmp_path / "acme.yaml"
    acme.write_text(ACME.format(v=1, t=5))
    store = PolicyStore(tmp_path)
    assert store.for_community("acme").version == "acme-1"
    assert store.for_community("other").version == built_in_policy().version
    assert store.errors() == {}
    assert not store.reload_if_changed().changed  # nothing changed, nothing reloaded

    acme.write_text(ACME.format(v=2, t=4))  # same size: content hash catches it
    result = store.reload_if_changed()
    assert result.loaded == [str(acme)]
    assert store.for_community("acme").version == "acme-2"
    assert store.for_community("acme").categories["spam"].threshold == 0.4

    acme.write_text("version: acme-3\ncategories:\n  spam: {threshold: 7, severity: medium}\n")
    result = store.reload_if_changed()
    assert str(acme) in result.rejected and not result.loaded
    error = store.errors()[str(acme)]
    assert str(acme) in error and "categories.spam.threshold" in error and "line 3" in error
    assert store.for_community("acme").version == "acme-2"  # last good keeps serving
    assert not store.reload_if_changed().rejected  # reported once, kept in errors()
    assert str(acme) in store.errors()

    acme.write_text("version: acme-4\ncategories: [unclosed\n")
    store.reload_if_changed()
    assert "not valid YAML" in store.errors()[str(acme)]
    assert store.for_community("acme").version == "acme-2"

    acme.write_text(ACME.format(v=5, t=3))
    assert store.reload_if_changed().loaded == [str(acme)]
    assert store.for_community("acme").version == "acme-5"
    assert store.errors() == {}

    acme.unlink()
    assert store.reload_if_changed().removed == [str(acme)]
    assert store.for_community("acme").version == built_in_policy().version


def test_folder_default_replaces_built_in_and_falls_back(tmp_path):
    store = PolicyStore(tmp_path)
    assert store.for_community("x").version == built_in_policy().version
    default = tmp_path / "default.yaml"
    default.write_text(DEFAULT)
    store.reload_if_changed()
    assert store.for_community("x").version == "folder-default-1"
    (tmp_path / "acme.yaml").write_text(ACME.format(v=1, t=5))
    store.reload_if_changed()
    (tmp_path / "acme.yaml").unlink()
    store.reload_if_changed()
    assert store.for_community("acme").version == "folder-default-1"  # deleted: the folder's default
    default.write_text("version: ''\ncategories: {}\n")
    store.reload_if_changed()
    assert store.for_community("x").version == "folder-default-1" and str(default) in store.errors()
    default.unlink()
    store.reload_if_changed()
    assert store.for_community("x").version == built_in_policy().version and store.errors() == {}


def test_invalid_file_at_start_serves_default_and_reports(tmp_path):
    (tmp_path / "bad.yaml").write_text("version: b\ncategories:\n  rudeness: {threshold: 0.5, severity: low}\n")
    store = PolicyStore(tmp_path)
    assert "unknown categories" in store.errors()[str(tmp_path / "bad.yaml")]
    assert store.for_community("bad").version == built_in_policy().version


def test_unchanged_old_files_are_not_reread(tmp_path):
    acme = tmp_path / "acme.yaml"
    acme.write_text(ACME.format(v=1, t=5))
    os.utime(acme, (1_000_000, 1_000_000))  # long ago: past the racy window
    store = PolicyStore(tmp_path)
    st = acme.stat()
    acme.write_text(ACME.format(v=2, t=5))
    os.utime(acme, ns=(st.st_atime_ns, st.st_mtime_ns))  # same stat: trusted, not re-read
    assert not store.reload_if_changed().changed
    assert store.for_community("acme").version == "acme-1"
    bump(acme)
    assert store.reload_if_changed().loaded == [str(acme)]
    assert store.for_community("acme").version == "acme-2"


def test_missing_folder_serves_built_in(tmp_path):
    store = PolicyStore(tmp_path / "nope")
    assert store.for_community("x") == built_in_policy()
    assert PolicyStore(None).for_community("x") == built_in_policy()
