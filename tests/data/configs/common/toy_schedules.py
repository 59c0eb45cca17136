"""Shared training settings for the toy configs."""

from config_toys import Recorder, make_schedule

from detkit.config import ConfigDict, L, LazyCall


def toy_train(output_dir: str = "runs/toy") -> ConfigDict:
    return ConfigDict(
        output_dir=output_dir,
        max_iter=100,
        amp=False,
        steps=(60, 80),
        sizes=[320, 416],
        schedule=L(make_schedule)(steps=(60, 80)),
    )


def toy_optimizer(lr: float = 0.01) -> LazyCall:
    return L(Recorder)(lr=lr, momentum=0.9)
