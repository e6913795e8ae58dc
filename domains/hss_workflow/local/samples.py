"""Sample data for the local platform and the tests: a song (MP3 or WAV, with lyrics) and a
training CSV, written under the allowed roots.

    python -m domains.hss_workflow.local.samples SONGS_ROOT TRAINING_ROOT

writes ``SONGS_ROOT/example.mp3`` + ``example.txt`` (lyrics) and
``TRAINING_ROOT/filtered/filtered_audio_only_corrected_20250621_180350.csv`` (2,000 songs), the
seed's example paths; set ``HSS_WORKFLOW_SONGS_ROOT`` / ``HSS_WORKFLOW_TRAINING_ROOT`` to the
same folders for every Airflow component.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SAMPLE_CSV = "filtered/filtered_audio_only_corrected_20250621_180350.csv"
LYRICS = "love love the sun\ndance with me\nlove love the sun\n"


def click_track(path, bpm: float, seconds: float = 6, rate: int = 22050, fmt: str | None = None) -> None:
    """A 220 Hz tone with a noise burst on every beat: a song whose tempo is known."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    y = 0.1 * np.sin(2 * np.pi * 220 * t)
    burst = 0.8 * np.random.default_rng(0).standard_normal(800) * np.exp(-np.arange(800) / 150)
    for start in np.arange(0, seconds - 0.1, 60 / bpm):
        i = int(start * rate)
        y[i:i + 800] += burst
    sf.write(str(path), y.astype("float32"), rate, format=fmt)


def write_dataset(path, rows: int, bad: int = 0, seed: int = 1) -> None:
    """A training CSV: song_id, three audio features, is_hit (hits are faster and louder)."""
    rng = random.Random(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["song_id", "tempo_bpm", "energy", "spectral_centroid_hz", "is_hit"])
        for i in range(rows):
            hit = rng.random() < 0.4
            w.writerow([f"song_{i}", round(rng.gauss(125 if hit else 100, 12), 2),
                        round(rng.gauss(0.7 if hit else 0.45, 0.12), 3), round(rng.gauss(2200, 500), 1), int(hit)])
        for i in range(bad):
            w.writerow([f"bad_{i}", "fast", "0.5", "2000", "1"])


def main(songs_root: str, training_root: str) -> None:
    songs = Path(songs_root)
    songs.mkdir(parents=True, exist_ok=True)
    click_track(songs / "example.mp3", 128, fmt="MP3")
    (songs / "example.txt").write_text(LYRICS)
    write_dataset(Path(training_root) / SAMPLE_CSV, 2000)
    (Path(training_root) / "incoming").mkdir(parents=True, exist_ok=True)
    print(f"wrote {songs / 'example.mp3'} and {Path(training_root) / SAMPLE_CSV}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
