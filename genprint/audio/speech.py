"""The speech corpus: sentences spoken by Debian's espeak-ng in many voices and rates, made on first use and cached.

Nothing downloads. Held-out clips differ from training clips in both voice and text, so a figure measured on them is
about speakers and words the training never heard.
"""

from __future__ import annotations

import logging
import random
import shutil
import subprocess
from pathlib import Path

from genprint.audio.signals import load_audio, save_audio
from genprint.errors import GenprintError
from genprint.settings import cache_dir

log = logging.getLogger(__name__)

CORPUS_VERSION = 1  # files are written at genprint.audio.RATE: a new rate needs a new version
# (language, voice variant): espeak-ng's English accents crossed with its voice variants; the last few are held out.
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan"]
VARIANTS = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "croak",
    "whisper",
]
HELD_OUT_VOICES = 8
WORDS = (
    "the a one every small bright quiet river stone window morning evening city garden music paper story yellow "
    "green distant careful sudden people children teacher doctor driver painter found carried opened followed "
    "remembered painted answered crossed under over behind beside through across before after while because "
    "slowly quickly gently often never always table letter bridge forest market station winter summer number "
    "mountain kitchen island engine silver golden heavy simple ancient modern"
).split()


def voices() -> list[str]:
    rng = random.Random(CORPUS_VERSION)
    pairs = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    rng.shuffle(pairs)
    return pairs


def sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(7, 14))) + "." for _ in range(count)]


def _speak(text: str, voice: str, words_per_minute: int, path: Path) -> None:
    raw = path.with_suffix(".raw.wav")
    try:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except subprocess.CalledProcessError as exc:
        raise GenprintError(f"espeak-ng failed for voice {voice}: {exc.stderr.decode()[:200]}") from None
    save_audio(load_audio(raw), path)  # espeak-ng writes 22,050 Hz: resample once, here
    raw.unlink()


def speech_clips(split: str = "train", clips: int = 240, root: Path | None = None) -> list[Path]:
    """Paths of `clips` speech clips of `split` ("train" or "held_out"), synthesised on first use."""
    if split not in ("train", "held_out"):
        raise GenprintError(f"split must be 'train' or 'held_out', got {split!r}")
    if shutil.which("espeak-ng") is None:
        raise GenprintError("the speech corpus needs espeak-ng (Debian: apt-get install espeak-ng)")
    all_voices = voices()
    chosen = all_voices[:-HELD_OUT_VOICES] if split == "train" else all_voices[-HELD_OUT_VOICES:]
    texts = sentences(clips, seed=1 if split == "train" else 2)  # different seeds: different sentences
    folder = (root or cache_dir() / "audio" / f"speech-v{CORPUS_VERSION}") / split
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{split}-{CORPUS_VERSION}")
    paths, made = [], 0
    for k, text in enumerate(texts):
        path = folder / f"{k:04d}.wav"
        voice, rate = chosen[k % len(chosen)], rng.choice([120, 150, 175, 200, 230])
        if not path.exists():
            if made == 0:
                log.info("synthesising the %s speech corpus (%d clips) with espeak-ng into %s", split, clips, folder)
            _speak(text, voice, rate, path)
            made += 1
        paths.append(path)
    return paths
