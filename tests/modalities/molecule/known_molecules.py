"""Hand-built geometries with known answers, shared by the harness tests."""
import numpy as np

TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)


def benzene(short: float, long: float) -> tuple[np.ndarray, np.ndarray]:
    """Planar C6H6 with alternating C-C lengths (Å), 120° angles, C-H 1.087 Å."""
    points, angle = [np.zeros(2)], 0.0
    for k in range(5):
        points.append(points[-1] + (short, long)[k % 2] * np.array([np.cos(angle), np.sin(angle)]))
        angle += np.pi / 3
    ring = np.array(points)
    out = (ring - ring.mean(0)) / np.linalg.norm(ring - ring.mean(0), axis=1, keepdims=True)
    xyz = np.vstack([np.c_[ring, np.zeros(6)], np.c_[ring + 1.087 * out, np.zeros(6)]])
    return np.array([6] * 6 + [1] * 6), xyz
