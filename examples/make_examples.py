"""Rebuild examples/: media rendered from the toy world, storyboards written by the ops themselves.

    python examples/make_examples.py
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine import ops  # noqa: E402
from engine.backends.toy import world  # noqa: E402
from engine.video_io import write_image, write_video  # noqa: E402


def scene(bg, *objs):
    return world.SceneSpec(bg, tuple(world.ObjectSpec(*o) for o in objs))


def save(tl, name):
    d = tl.to_dict()
    for c in d["cards"]:
        if "path" in c:
            c["path"] = str(Path(c["path"]).relative_to(HERE))
    for p in d["assemble"] or []:
        if p["source"] != "generated":
            p["source"] = str(Path(p["source"]).relative_to(HERE))
    (HERE / name).write_text(json.dumps(d, indent=2) + "\n")


def main():
    media = HERE / "media"
    media.mkdir(exist_ok=True)
    ball = scene("black", ("circle", "red", "large", "right", 0.3, 0.5))
    box = scene("gray", ("square", "blue", "large", "left", 0.7, 0.5))
    first = scene("beige", ("triangle", "green", "large", "still", 0.5, 0.5))
    write_video(media / "ball.mp4", world.render(ball, 112, 64, 12, 24), 12, overwrite=True)
    write_video(media / "box.mp4", world.render(box, 112, 64, 12, 24), 12, overwrite=True)
    write_image(media / "first.png", world.render(first, 112, 64, 12, 1)[0], overwrite=True)
    save(ops.i2v(str(media / "first.png"), "a large green triangle moving up on beige", duration_s=2, fps=12), "i2v.json")
    save(ops.loop(str(media / "ball.mp4"), bridge_s=1.0, context_s=0.5), "loop.json")
    save(ops.blend(str(media / "ball.mp4"), str(media / "box.mp4"), "0:0,0.35:0,0.65:1,1:1",
                   "a large red circle moving right on black", "a large blue square moving left on gray"), "blend.json")
    save(ops.remix(str(media / "ball.mp4"), "a large yellow circle moving right on black", 0.5), "remix.json")


if __name__ == "__main__":
    main()
