"""The triggered DAGs' conf schema, validated the way Airflow validates a trigger's conf
(``ParamsDict.validate``: jsonschema, "Invalid input for param <field>: <jsonschema's error>")."""

from __future__ import annotations

import pytest


@pytest.fixture
def songs_root(tmp_path, monkeypatch):
    root = tmp_path / "srv" / "hss" / "songs"
    root.mkdir(parents=True)
    monkeypatch.setenv("HSS_WORKFLOW_SONGS_ROOT", str(root))
    return root


def _validate(conf: dict) -> dict:
    from airflow.sdk.definitions.param import ParamsDict

    from domains.hss_workflow.conf import analysis_params

    params = ParamsDict(analysis_params())
    params.update(conf)  # each value is checked as it is set, then the whole dict
    return params.validate()


@pytest.mark.parametrize("song_path", ["../../etc/passwd", "/etc/passwd", "sub/../../x.mp3", "{root}/../x.mp3"])
def test_a_song_path_outside_the_songs_folder_is_refused_in_words_without_server_paths(songs_root, song_path):
    from airflow.sdk.exceptions import ParamValidationError

    from domains.hss_workflow.conf import path_pattern

    value = song_path.format(root=songs_root)
    with pytest.raises(ParamValidationError) as err:
        _validate({"song_id": "s1", "song_path": value})
    message = str(err.value)
    server = message.replace(repr(value), "")  # what the server adds to the caller's own value
    assert message.startswith("Invalid input for param song_path: ") and "song_path" in message
    assert "must be a file under the songs folder, no '..'" in message, message
    assert str(songs_root) not in server and str(songs_root.parent) not in server, message
    assert path_pattern(songs_root) not in message and "pattern" not in message and "\\." not in message, message


def test_song_paths_under_the_songs_folder_are_accepted(songs_root):
    for song_path in ("example.mp3", "album/example.mp3", f"{songs_root}/example.mp3", "..example.mp3"):
        assert _validate({"song_id": "s1", "song_path": song_path})["song_path"] == song_path


@pytest.mark.parametrize("song_id", ["s1\n", "s1\nDROP", "", "-s1"])
def test_a_song_id_with_a_trailing_newline_or_other_characters_is_refused(songs_root, song_id):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="param song_id"):
        _validate({"song_id": song_id, "song_path": "example.mp3"})
    assert _validate({"song_id": "example_song_123", "song_path": "example.mp3"})["song_id"] == "example_song_123"
