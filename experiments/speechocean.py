"""jimbozhang/speechocean762 (5,000 read sentences, 250 Mandarin-L1 speakers, half of them
children; Apache-2.0 per its dataset card) -> the LibriSpeech layout `speechlstm corpus` reads.

    git --git-dir=/work/.mirror/jimbozhang+speechocean762/repo archive HEAD WAVE train test | tar -x -C RAW
    python experiments/speechocean.py RAW OUT      # OUT/soNNNN/0/soNNNN-0-UTT.wav (links) + .trans.txt
    speechlstm corpus OUT --out /work/extra/so762 --words all
"""

import os
import sys
from pathlib import Path


def main(raw: Path, out: Path) -> None:
    n = 0
    lines: dict[Path, list[str]] = {}
    for split in ("train", "test"):
        scp = dict(line.split(maxsplit=1) for line in (raw / split / "wav.scp").read_text().splitlines() if line.strip())
        for line in (raw / split / "text").read_text().splitlines():
            utt, _, text = line.strip().partition("\t") if "\t" in line else line.strip().partition(" ")
            if not utt:
                continue
            rel = scp[utt].strip()
            spk = Path(rel).parent.name.replace("SPEAKER", "so")
            folder = out / spk / "0"
            folder.mkdir(parents=True, exist_ok=True)
            key = f"{spk}-0-{utt}"
            if not (folder / f"{key}.wav").exists():
                os.symlink((raw / rel).resolve(), folder / f"{key}.wav")
            lines.setdefault(folder / f"{spk}-0.trans.txt", []).append(f"{key} {text.strip().upper()}")
            n += 1
    for path, rows in lines.items():
        path.write_text("".join(f"{r}\n" for r in rows))
    print(f"{n} utterances by {sum(1 for _ in out.iterdir())} speakers in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
