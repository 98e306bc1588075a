"""`cirforge world render`: a PNG grid of ShapesWorld scenes with their captions."""
from __future__ import annotations

import random
import textwrap
from pathlib import Path


def render_grid(out: Path, n: int = 16, seed: int = 0, size: int = 128) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.shapesworld import ShapesWorld, render

    world = ShapesWorld(image_size=size, seed=seed)
    rng = random.Random(seed)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        ax.axis("off")
        if k >= n:
            continue
        scene = world.sample_scene(rng)
        ax.imshow(render(scene, size))
        ax.set_title("\n".join(textwrap.wrap(scene.caption(), 38)), fontsize=6.5)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
