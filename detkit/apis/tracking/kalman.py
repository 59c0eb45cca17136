"""A constant-velocity Kalman filter over box centre, aspect ratio and height, for many tracks at once.

The state of one track is 8 numbers ``(cx, cy, a, h, vcx, vcy, va, vh)``: the box centre in pixels,
its aspect ratio ``a = width / height``, its height in pixels, and their velocities per frame. The
measurement is the first four. This is the motion model of SORT / DeepSORT that ByteTrack uses:

* motion ``x_{t+1} = F x_t`` with ``F = [[I, I], [0, I]]`` (one frame per step);
* the noise standard deviations are proportional to the box height (a big, near box moves more
  pixels per frame than a small, far one): ``1/20`` of the height for positions and ``1/160`` for
  velocities, ``1e-2`` (position) / ``1e-5`` (velocity) for the aspect ratio, and ``1e-1`` for the
  measured aspect ratio -- the constants of DeepSORT's filter, kept by ByteTrack.

Every method works on a batch: ``mean [N, 8]`` and ``covariance [N, 8, 8]`` float64 arrays, one
row per track, so a frame with many tracks costs one numpy call per step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KalmanFilter", "cxcyah_to_xyxy", "xyxy_to_cxcyah"]

_NDIM = 4  # measured: cx, cy, a, h


def xyxy_to_cxcyah(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` xyxy boxes (pixels) as ``[N, 4]`` (centre x, centre y, width / height, height).

    A box of zero height gets height 1e-6 (its aspect ratio stays finite).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width = boxes[:, 2] - boxes[:, 0]
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     width / height, height], axis=1)


def cxcyah_to_xyxy(states: np.ndarray) -> np.ndarray:
    """The inverse of :func:`xyxy_to_cxcyah`: ``[N, >=4]`` (cx, cy, a, h, ...) as ``[N, 4]`` xyxy."""
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    height = states[:, 3]
    width = states[:, 2] * height
    return np.stack([states[:, 0] - width / 2, states[:, 1] - height / 2,
                     states[:, 0] + width / 2, states[:, 1] + height / 2], axis=1)


class KalmanFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, a, h)``, batched over tracks.

    Args:
        std_weight_position: Position noise as a fraction of the box height (per frame).
        std_weight_velocity: Velocity noise as a fraction of the box height (per frame).
    """

    def __init__(self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160) -> None:
        self.std_weight_position = float(std_weight_position)
        self.std_weight_velocity = float(std_weight_velocity)
        self.motion = np.eye(2 * _NDIM)
        self.motion[:_NDIM, _NDIM:] = np.eye(_NDIM)  # x += v (one frame)
        self.observation = np.eye(_NDIM, 2 * _NDIM)  # measure the first four

    def _position_std(self, height: np.ndarray, aspect_std: float) -> np.ndarray:
        """``[N, 4]`` standard deviations of (cx, cy, a, h) for boxes of ``height [N]``."""
        scaled = self.std_weight_position * height
        return np.stack([scaled, scaled, np.full_like(height, aspect_std), scaled], axis=1)

    def _velocity_std(self, height: np.ndarray, aspect_std: float) -> np.ndarray:
        scaled = self.std_weight_velocity * height
        return np.stack([scaled, scaled, np.full_like(height, aspect_std), scaled], axis=1)

    def initiate(self, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from measurements: at rest, with a wide velocity uncertainty.

        Args:
            measurements: ``[N, 4]`` (cx, cy, a, h), see :func:`xyxy_to_cxcyah`.

        Returns:
            ``(mean [N, 8], covariance [N, 8, 8])``.
        """
        measurements = np.asarray(measurements, dtype=np.float64).reshape(-1, _NDIM)
        mean = np.concatenate([measurements, np.zeros_like(measurements)], axis=1)
        height = measurements[:, 3]
        std = np.concatenate([2 * self._position_std(height, 1e-2),
                              10 * self._velocity_std(height, 1e-5)], axis=1)
        return mean, _diagonal(std ** 2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``x = F x``, ``P = F P F^T + Q``.

        Args:
            mean: ``[N, 8]`` states.
            covariance: ``[N, 8, 8]``.

        Returns:
            The predicted ``(mean [N, 8], covariance [N, 8, 8])`` (new arrays).
        """
        height = mean[:, 3]
        noise = _diagonal(np.concatenate([self._position_std(height, 1e-2),
                                          self._velocity_std(height, 1e-5)], axis=1) ** 2)
        mean = mean @ self.motion.T
        covariance = self.motion @ covariance @ self.motion.T + noise
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The states in measurement space: ``(H x [N, 4], H P H^T + R [N, 4, 4])``."""
        noise = _diagonal(self._position_std(mean[:, 3], 1e-1) ** 2)
        return mean @ self.observation.T, self.observation @ covariance @ self.observation.T + noise

    def update(self, mean: np.ndarray, covariance: np.ndarray,
               measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct predicted states with their measurements (row ``i`` with measurement ``i``).

        Args:
            mean: ``[N, 8]`` predicted states.
            covariance: ``[N, 8, 8]``.
            measurements: ``[N, 4]`` (cx, cy, a, h).

        Returns:
            The corrected ``(mean [N, 8], covariance [N, 8, 8])``.
        """
        measurements = np.asarray(measurements, dtype=np.float64).reshape(-1, _NDIM)
        projected_mean, projected_cov = self.project(mean, covariance)
        # gain K = P H^T S^-1, solved as S K^T = H P (S symmetric positive definite)
        cross = covariance @ self.observation.T  # [N, 8, 4]
        gain = np.linalg.solve(projected_cov, np.swapaxes(cross, 1, 2)).swapaxes(1, 2)
        innovation = measurements - projected_mean
        mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        covariance = covariance - gain @ projected_cov @ np.swapaxes(gain, 1, 2)
        return mean, covariance


def _diagonal(values: np.ndarray) -> np.ndarray:
    """``[N, D]`` -> ``[N, D, D]`` diagonal matrices."""
    out = np.zeros((*values.shape, values.shape[-1]), dtype=np.float64)
    index = np.arange(values.shape[-1])
    out[:, index, index] = values
    return out
