"""Charging tails along the scan: measured from a first pass's features, removed before thresholding again.

A charged resist edge leaves a trail behind it along the scan direction (x, left to right): a
brighter or darker band that decays over several pixels. Across each row the image is then
modelled as

    image = background + step * F + tail * (h_tau * F) + edge bands,

with F the feature map (1 on features), h_tau a causal exponential of decay length tau px
along +x, a smooth background (a quadratic in x and y) and a narrow band on each side of every
edge (the symmetric edge brightening, which is not a tail). When the tail is large against the
step, the level right at an edge differs from the level far from it, and thresholding puts
trailing edges in the tail instead of at the material step.

:func:`fit_scan_tail` fits that model by least squares on a first pass's feature map, for decay
lengths of 3-40 px, and again with the tail running backwards (against the scan). A tail only
explains an image when the forward tail explains a clear share of the residual and clearly more
than the backward one (:data:`ASYMMETRY`): a symmetric effect (blur, edge rings, a wrong feature
map) fits both alike. :func:`remove_scan_tail` then inverts the row model (a Wiener filter, so the noise is
not blown up) and :func:`segsem_lite.pipeline.segment_image` thresholds the result again,
keeping the second pass only when its feature map explains the original image better than the
first pass's. It tries two signal-to-noise ratios for the filter and, since a first pass misled
by the tail misleads its fit too, fits the tail again on the pass it kept, for a few rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import lfilter

__all__ = ["ScanTail", "fit_scan_tail", "remove_scan_tail", "near_edges"]

#: Decay lengths tried, px along the scan.
TAUS_PX = (3.0, 4.5, 6.5, 9.0, 13.0, 19.0, 28.0, 40.0)
#: Pixels this close to a feature's boundary are left out of the fit: the beam's blur and the
#: first pass's error live there, not the tail.
EDGE_PX = 2.0
#: Share of the residual a tail must explain to be one (:meth:`ScanTail.explains`).
MIN_GAIN = 0.02
#: How many times more of the residual the forward tail must explain than the backward one
#: (:meth:`ScanTail.explains`). A first pass that the tail misled fits both weakly: at 3 (before
#: 2026-12-08) such tails went unseen. At 1.5, 24 images of the second renderer's seeds 2024-2090
#: change, 23 of them for the better. A pass without the tail is kept only when it explains the
#: image better anyway (:func:`segsem_lite.pipeline.segment_image`).
ASYMMETRY = 1.5
#: Fewest sampled pixels, clear of the edges, a fit is made on.
MIN_SAMPLES = 200
#: Decay length of the symmetric edge bands the model allows on each side of an edge, px.
BAND_PX = 2.5


@dataclass(frozen=True)
class ScanTail:
    """A charging tail fitted to an image.

    Attributes
    ----------
    tau_px : float
        Decay length along the scan (+x), px.
    step : float
        The material step at each edge (image levels, features against surroundings).
    tail : float
        The tail's amplitude: far from an edge the step is ``step + tail``.
    gain : float
        Share of the residual (without a tail) that the forward tail explains.
    gain_backward : float
        The same for the best tail running against the scan.
    residual : float
        Sum of squared residuals with the forward tail.
    """

    tau_px: float
    step: float
    tail: float
    gain: float
    gain_backward: float
    residual: float

    def explains(self, *, min_gain: float = MIN_GAIN, asymmetry: float = ASYMMETRY) -> bool:
        """Whether the tail is there: it must explain at least ``min_gain`` of the residual and
        ``asymmetry`` times more than a tail against the scan.

        A tail that cancels the material step far from the edges (``step + tail`` near 0) is
        one too: only the edges then carry the features, and removing it at a low
        signal-to-noise ratio (:func:`remove_scan_tail`) gives the features back at the scale
        they have, with only the slowest variations along the scan lost.
        """
        return bool(self.gain > min_gain and self.gain > asymmetry * self.gain_backward)


def _lag(rows: np.ndarray, tau: float, backward: bool = False) -> np.ndarray:
    """Causal exponential smoothing along each row (decay ``tau`` px), started at the row's first value."""
    a = np.exp(-1.0 / tau)
    x = rows[:, ::-1] if backward else rows
    y = lfilter([1 - a], [1, -a], x, axis=1, zi=a * x[:, :1])[0]
    return y[:, ::-1] if backward else y


def _depths(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each pixel to the nearest pixel off the map (inside) and on it (outside)."""
    f8 = features.astype(np.uint8)
    return cv2.distanceTransform(f8, cv2.DIST_L2, 5), cv2.distanceTransform(1 - f8, cv2.DIST_L2, 5)


def _within(features: np.ndarray, din: np.ndarray, dout: np.ndarray, px: float) -> np.ndarray:
    return ((din <= px) & features) | ((dout <= px) & ~features)


def near_edges(features: np.ndarray, px: float = EDGE_PX) -> np.ndarray:
    """Pixels within ``px`` of a boundary of the boolean map ``features``, on either side."""
    f = np.asarray(features, bool)
    return _within(f, *_depths(f), px)


def fit_scan_tail(unit: np.ndarray, features: np.ndarray, *, exclude: np.ndarray | None = None,
                  every: int = 3, backward_above: float | None = 0.0) -> ScanTail:
    """Fit ``background + step * F + tail * (h_tau * F) + edge bands`` to ``unit``, row by row.

    F is the feature map ``features``, h_tau a causal exponential of decay length tau px
    along +x (tried for each of :data:`TAUS_PX`), the background a quadratic in x and y,
    and the edge bands a narrow exponential on each side of every edge. The same is fitted
    with the tail running against the scan, for :meth:`ScanTail.explains`.

    Parameters
    ----------
    unit : (M, N) float ndarray
        The image (as the classical path thresholds it).
    features : (M, N) bool ndarray
        Where the features are (a first pass's masks together).
    exclude : (M, N) bool ndarray, optional
        More pixels to leave out of the fit (by default those near the map's own edges).
    every : int
        Every ``every``-th row and column is fitted.
    backward_above : float or None
        Tails against the scan are fitted only when the forward tail explains more than
        this share (``gain_backward`` is NaN otherwise: a tail explaining less is no tail);
        None never fits them (only ``residual`` is wanted).

    Returns
    -------
    ScanTail
    """
    f = np.asarray(features, bool)
    h, w = f.shape
    din, dout = _depths(f)
    skip = _within(f, din, dout, EDGE_PX)
    if exclude is not None:
        skip |= exclude
    rows, cols = slice(0, h, every), slice(0, w, every)
    keep = ~skip[rows, cols]
    fs = f[rows, cols]
    yy, xx = np.mgrid[0:h:every, 0:w:every]
    xx, yy = xx / w - 0.5, yy / h - 0.5
    base = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy, fs.astype(float),
                     np.exp(-din[rows, cols] / BAND_PX) * fs, np.exp(-dout[rows, cols] / BAND_PX) * ~fs], -1)[keep]
    if keep.sum() < MIN_SAMPLES:  # too few pixels clear of the edges to tell a tail: none, and no better fit
        return ScanTail(tau_px=0.0, step=0.0, tail=0.0, gain=0.0, gain_backward=float("nan"), residual=float("inf"))
    y = np.asarray(unit, float)[rows, cols][keep]
    ata, aty, yty = base.T @ base, base.T @ y, float(y @ y)
    ridge = 1e-9 * np.eye(len(ata) + 1)
    c0 = np.linalg.solve(ata + ridge[:-1, :-1], aty)
    r0 = max(yty - float(c0 @ aty), 1e-12)
    frows = f[rows].astype(float)
    best: dict[bool, tuple] = {}
    for backward in (False, True):
        if backward and (backward_above is None or 1.0 - best[False][0] / r0 <= backward_above):
            break
        for tau in TAUS_PX:
            g = _lag(frows, tau, backward)[:, cols][keep]
            atg = base.T @ g
            m = np.block([[ata, atg[:, None]], [atg[None, :], np.array([[g @ g]])]])
            v = np.append(aty, g @ y)
            c = np.linalg.solve(m + ridge, v)
            r = yty - float(c @ v)
            if backward not in best or r < best[backward][0]:
                best[backward] = (r, tau, c)
    r, tau, c = best[False]
    return ScanTail(tau_px=float(tau), step=float(c[6]), tail=float(c[-1]), gain=1.0 - r / r0,
                    gain_backward=1.0 - best[True][0] / r0 if True in best else float("nan"), residual=float(r))


def remove_scan_tail(unit: np.ndarray, tail: ScanTail, *, snr: float = 20.0) -> np.ndarray:
    """The image with the tail taken out along each row.

    Each row is filtered by the Wiener inverse of ``step + tail * h_tau`` (its noise held down
    at ``1/snr**2`` of the filter's peak power), then brought back to the row's mean, the
    image's spread and its polarity, so thresholds set for the image still apply.

    Parameters
    ----------
    unit : (M, N) float ndarray
    tail : ScanTail
    snr : float

    Returns
    -------
    (M, N) float32 ndarray
    """
    u = np.asarray(unit, float)
    h, w = u.shape
    a = np.exp(-1.0 / tail.tau_px)
    pad = int(min(4 * tail.tau_px, w))
    x = np.pad(u, ((0, 0), (pad, pad)), mode="edge")
    n = x.shape[1]
    om = 2 * np.pi * np.fft.rfftfreq(n)
    k = tail.step + tail.tail * (1 - a) / (1 - a * np.exp(-1j * om))
    k = k / max(float(np.abs(k).max()), 1e-12)
    wiener = np.conj(k) / (np.abs(k) ** 2 + 1.0 / snr ** 2)
    mean = x.mean(1, keepdims=True)
    out = np.fft.irfft(np.fft.rfft(x - mean, axis=1) * wiener, n=n, axis=1)[:, pad:pad + w]
    ref = u - u.mean(1, keepdims=True)
    gain = ref.std() / max(float(out.std()), 1e-12)
    sign = 1.0 if float((out * ref).sum()) >= 0 else -1.0
    return (u.mean(1, keepdims=True) + sign * gain * out).astype(np.float32)
