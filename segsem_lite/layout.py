"""Design layouts in nm: GDS/OASIS input, SEM-to-design alignment, gauges and export.

Coordinates, stated once for the whole project:

- **Pixels**: x = column to the right, y = row down, pixel centres at integers.
- **Layout**: nm, x to the right, y up (gdstk reads GDSII and OASIS; the file's user
  unit is converted to nm).
- **Site**: an image's site ``(layout_x_nm, layout_y_nm)`` is the layout point at the
  image's centre, halfway between its first and last pixel centres:
  pixel ``((W - 1) / 2, (H - 1) / 2)``. ``rotation_deg`` turns the image's x axis
  counter-clockwise from the layout's x axis.
- **Alignment**: ``align_dx_nm``, ``align_dy_nm`` are the correction added to the
  nominal site, in layout axes: the aligned site is where the image really is.

A design polygon is a feature: resist that stays or an opening, whichever the layer
draws. Gauges sit on the design's edges (every ``step`` nm) or come from a cutline file
(``x1,y1,x2,y2`` in layout nm); EPE is the signed distance from the design edge to the
extracted contour along the edge's outward normal (positive: the printed feature is
larger than drawn).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .errors import SegSEMError

__all__ = [
    "Site", "Layout", "Alignment", "Placement", "read_layout", "parse_layer", "rasterize_polygons", "align_to_design",
    "register_images", "edge_gauges", "gauge_epe", "read_cutlines", "cutline_cd", "epe_summary",
    "write_layout_contours", "LAYOUT_SUFFIXES",
]

#: File suffixes read as layouts.
LAYOUT_SUFFIXES = (".gds", ".gds2", ".gdsii", ".oas", ".oasis")


# ----------------------------------------------------------------------------- sites

@dataclass(frozen=True)
class Site:
    """Where an image lies in the layout.

    Attributes
    ----------
    center_nm : (float, float)
        Layout point at pixel ``((W - 1) / 2, (H - 1) / 2)``.
    pixel_size_nm : float
    shape : (rows, cols)
    rotation_deg : float
        Counter-clockwise angle from the layout's x axis to the image's x axis.
    """

    center_nm: tuple[float, float]
    pixel_size_nm: float
    shape: tuple[int, int]
    rotation_deg: float = 0.0

    def _rot(self) -> tuple[float, float]:
        t = np.deg2rad(self.rotation_deg)
        return float(np.cos(t)), float(np.sin(t))

    def to_pixels(self, xy_nm: np.ndarray) -> np.ndarray:
        """Layout points (nm) to pixel points (x, y)."""
        p = np.asarray(xy_nm, float).reshape(-1, 2) - np.asarray(self.center_nm, float)
        c, s = self._rot()
        u = c * p[:, 0] + s * p[:, 1]
        v = -s * p[:, 0] + c * p[:, 1]
        rows, cols = self.shape
        return np.column_stack([(cols - 1) / 2 + u / self.pixel_size_nm, (rows - 1) / 2 - v / self.pixel_size_nm])

    def to_layout(self, xy_px: np.ndarray) -> np.ndarray:
        """Pixel points (x, y) to layout points (nm)."""
        p = np.asarray(xy_px, float).reshape(-1, 2)
        rows, cols = self.shape
        u = (p[:, 0] - (cols - 1) / 2) * self.pixel_size_nm
        v = ((rows - 1) / 2 - p[:, 1]) * self.pixel_size_nm
        c, s = self._rot()
        return np.column_stack([self.center_nm[0] + c * u - s * v, self.center_nm[1] + s * u + c * v])

    def pixel_shift_to_layout(self, dx_px: float, dy_px: float) -> tuple[float, float]:
        """A shift in pixel axes as the same shift in layout axes (nm)."""
        a, b = self.to_layout([[dx_px, dy_px], [0.0, 0.0]])
        return float(a[0] - b[0]), float(a[1] - b[1])

    def shifted(self, dx_nm: float, dy_nm: float) -> "Site":
        """The site moved by (dx, dy) nm in layout axes."""
        return replace(self, center_nm=(self.center_nm[0] + dx_nm, self.center_nm[1] + dy_nm))

    def window_nm(self, margin_nm: float = 0.0) -> tuple[float, float, float, float]:
        """Layout box (xmin, ymin, xmax, ymax) covering the image's pixels plus a margin."""
        rows, cols = self.shape
        corners = self.to_layout([[-0.5, -0.5], [cols - 0.5, -0.5], [cols - 0.5, rows - 0.5], [-0.5, rows - 0.5]])
        lo, hi = corners.min(axis=0) - margin_nm, corners.max(axis=0) + margin_nm
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ----------------------------------------------------------------------------- reading

def parse_layer(text: str | int | tuple | None) -> tuple[int, int] | None:
    """``"L/D"``, ``"L"`` or ``(L, D)`` to (layer, datatype); None stays None (the only layer)."""
    if text is None or text == "":
        return None
    if isinstance(text, tuple):
        return int(text[0]), int(text[1])
    parts = str(text).replace(":", "/").split("/")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if not 1 <= len(vals) <= 2 or min(vals) < 0:
        raise SegSEMError(f"layer {text!r}: expected LAYER/DATATYPE such as 1/0")
    return vals[0], vals[1] if len(vals) == 2 else 0


@dataclass
class Layout:
    """The polygons of one layer of a layout file, in nm.

    Attributes
    ----------
    path : Path
    layer : (int, int)
        Layer and datatype read.
    polygons : list of (K, 2) ndarray
        Flattened polygons in nm (x right, y up); a polygon's id is its index + 1.
    bboxes : (N, 4) ndarray
        (xmin, ymin, xmax, ymax) of each polygon.
    """

    path: Path
    layer: tuple[int, int]
    polygons: list
    bboxes: np.ndarray

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Box of all polygons (nm)."""
        b = self.bboxes
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())

    def in_window(self, box: tuple[float, float, float, float]) -> list[int]:
        """Indices (0-based) of the polygons whose boxes meet ``box`` (xmin, ymin, xmax, ymax)."""
        b = self.bboxes
        hit = (b[:, 0] <= box[2]) & (b[:, 2] >= box[0]) & (b[:, 1] <= box[3]) & (b[:, 3] >= box[1])
        return [int(i) for i in np.nonzero(hit)[0]]

    def check_site(self, site: Site, where: str) -> None:
        """Raise when the site's field holds no polygon and lies outside the layout's extent."""
        box = site.window_nm()
        x0, y0, x1, y1 = self.extent
        if box[2] < x0 or box[0] > x1 or box[3] < y0 or box[1] > y1:
            raise SegSEMError(f"{where}: site ({site.center_nm[0]:g}, {site.center_nm[1]:g}) nm is outside the "
                              f"layout {self.path.name} (layer {self.layer[0]}/{self.layer[1]} spans x {x0:g} to "
                              f"{x1:g}, y {y0:g} to {y1:g} nm)")


class _c_stderr:
    """Collect what C code writes to file descriptor 2 into a list of lines."""

    def __init__(self, lines: list):
        self.lines = lines

    def __enter__(self):
        import os
        import sys
        import tempfile

        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.lines.extend(self._tmp.read().decode(errors="replace").splitlines())
        self._tmp.close()


def read_layout(path: str | Path, layer: str | tuple | None = None) -> Layout:
    """Read one layer of a GDSII or OASIS file, every top cell flattened, in nm.

    Parameters
    ----------
    path : path
        ``.gds`` (``.gds2``, ``.gdsii``) or ``.oas`` (``.oasis``).
    layer : "L/D", optional
        The layer to read; may be omitted when the file has one layer only.

    Raises
    ------
    SegSEMError
        For a missing or unreadable file, or a layer the file does not have (the
        message lists the layers it has).
    """
    import gdstk

    path = Path(path)
    want = parse_layer(layer)
    if not path.is_file():
        raise SegSEMError(f"{path}: no such layout file")
    suffix = path.suffix.lower()
    if suffix not in LAYOUT_SUFFIXES:
        raise SegSEMError(f"{path}: not a layout file; expected one of {', '.join(LAYOUT_SUFFIXES)}")
    said: list[str] = []
    try:
        with _c_stderr(said):  # gdstk prints its diagnosis on the C stderr: it goes into the one-line message
            lib = gdstk.read_oas(str(path)) if suffix in (".oas", ".oasis") else gdstk.read_gds(str(path))
    except Exception as exc:  # gdstk raises RuntimeError/OSError with its own text
        kind = "OASIS" if suffix in (".oas", ".oasis") else "GDSII"
        why = " ".join(line.replace("[GDSTK]", "").strip() for line in said if line.strip())
        raise SegSEMError(f"{path}: unreadable {kind} file ({why or str(exc).strip() or type(exc).__name__})") from None
    to_nm = lib.unit * 1e9
    polys: dict[tuple[int, int], list] = {}
    for top in lib.top_level():
        for p in top.get_polygons(apply_repetitions=True, include_paths=True):
            polys.setdefault((p.layer, p.datatype), []).append(p.points * to_nm)
    if not polys:
        raise SegSEMError(f"{path}: the layout holds no polygons")
    have = ", ".join(f"{a}/{b}" for a, b in sorted(polys))
    if want is None:
        if len(polys) > 1:
            raise SegSEMError(f"{path}: several layers ({have}); choose one with --layer L/D")
        want = next(iter(polys))
    if want not in polys:
        raise SegSEMError(f"{path}: no polygons on layer {want[0]}/{want[1]}; the file has layers {have}")
    pts = polys[want]
    boxes = np.array([[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in pts])
    return Layout(path=path, layer=want, polygons=pts, bboxes=boxes)


# ----------------------------------------------------------------------------- rasterising

def rasterize_polygons(polygons_px: list, shape: tuple[int, int], *, origin: tuple[float, float] = (0.0, 0.0),
                       supersample: int = 4) -> np.ndarray:
    """Area coverage (0-1) of polygons given in pixel coordinates, on a grid of ``shape``.

    ``origin`` is the pixel point drawn at the grid's pixel (0, 0) (a grid larger than the
    image starts at a negative origin). Each pixel is sampled at ``supersample`` squared
    points (a sample counts when its centre is inside); overlapping polygons count once.
    """
    from skimage.draw import polygon as draw_polygon

    rows, cols = shape
    big = np.zeros((rows * supersample, cols * supersample), bool)
    for p in polygons_px:
        q = (np.asarray(p, float) - np.asarray(origin, float) + 0.5) * supersample - 0.5
        rr, cc = draw_polygon(q[:, 1], q[:, 0], big.shape)
        big[rr, cc] = True
    return big.reshape(rows, supersample, cols, supersample).mean(axis=(1, 3))


# ----------------------------------------------------------------------------- alignment

@dataclass(frozen=True)
class Alignment:
    """The result of registering an image to its design or to a reference image.

    Attributes
    ----------
    dx_nm, dy_nm : float
        Correction added to the nominal site, layout axes (for ``register_images``: the
        shift of the image against the reference, layout axes).
    dx_px, dy_px : float
        The same in pixel axes.
    score : float
        Normalised cross-correlation of the edge maps at the optimum (1 = identical).
    ambiguity : float
        Best score away from the optimum over the optimum's (a repeating pattern gives
        close to 1: shifting by one period fits nearly as well).
    ok : bool
        Score above ``min_score`` and ambiguity below ``max_ambiguity``.
    message : str
        Why it is not trusted, when it is not.
    print_model : (float, float)
        The printed-design model the sub-pixel refinement chose (``align_to_design``): the
        design blurred by a Gaussian of this sigma (nm) and cut at this level; (0, 0.5) is
        the design as drawn.
    tail_px : float
        Length (px) of the charging tail along the scan that the sub-pixel refinement
        modelled (``align_to_design``), chosen from :data:`TAIL_GRID_PX`.
    sigma_px : float
        How far (px, one standard deviation) the image's noise alone moves the refined position,
        along the less certain axis (``align_to_design``; :func:`_shift_sigma`). NaN when not
        measured; infinite when the fit does not curve down around its optimum along some axis.
        The position is kept either way: it is still the best the image allows, and this says
        how good that is.
    """

    dx_nm: float
    dy_nm: float
    dx_px: float
    dy_px: float
    score: float
    ambiguity: float
    ok: bool
    message: str = ""
    print_model: tuple = (0.0, 0.5)
    tail_px: float = 0.0
    sigma_px: float = float("nan")


#: Below this normalised cross-correlation the alignment is flagged.
MIN_ALIGN_SCORE = 0.25
#: Above this ratio of the second-best to the best score the alignment is flagged as ambiguous.
MAX_ALIGN_AMBIGUITY = 0.92


def _window_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum of ``a`` over every h x w window (the 'valid' positions), from cumulative sums."""
    c = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def _ncc(search: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``template`` at every position inside ``search`` ('valid' positions).

    Windows of ``search`` with (almost) no variance, where a correlation means nothing,
    score 0 instead of the huge values a division by their variance would give.
    """
    from scipy.signal import fftconvolve

    s = np.asarray(search, np.float64)
    t = np.asarray(template, np.float64)
    t = t - t.mean()
    tn = float(np.sqrt((t * t).sum()))
    num = fftconvolve(s, t[::-1, ::-1], mode="valid")
    h, w = t.shape

    n = h * w
    ssum, ssq = _window_sums(s, h, w), _window_sums(s * s, h, w)
    var = np.clip(ssq - ssum * ssum / n, 0, None)
    floor = 1e-3 * float(var.max()) if var.size else 0.0
    out = np.where(var > floor, num / (np.sqrt(np.maximum(var, floor)) * tn + 1e-12), 0.0)
    return out


def _peak(ncc: np.ndarray, exclude_px: float) -> tuple[float, float, float, float]:
    """(x, y, score, ambiguity) of the sub-pixel maximum of a correlation map."""
    r, c = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    best = float(ncc[r, c])

    def parabola(a: float, b: float, d: float) -> float:
        den = a - 2 * b + d
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))

    dx = parabola(ncc[r, c - 1], best, ncc[r, c + 1]) if 0 < c < ncc.shape[1] - 1 else 0.0
    dy = parabola(ncc[r - 1, c], best, ncc[r + 1, c]) if 0 < r < ncc.shape[0] - 1 else 0.0
    yy, xx = np.ogrid[:ncc.shape[0], :ncc.shape[1]]
    away = (yy - r) ** 2 + (xx - c) ** 2 > exclude_px ** 2
    # a second maximum counts only where it is a local maximum (not the flank of the first)
    local = ncc == ndi.maximum_filter(ncc, size=3)
    cand = ncc[away & local]
    second = float(cand.max()) if cand.size else 0.0
    return c + dx, r + dy, best, (second / best if best > 0 else 1.0)


def _second_peak(ncc: np.ndarray, at: tuple, exclude_px: float) -> tuple[int, int]:
    """(row, col) of the best local maximum of a correlation map further than ``exclude_px`` from ``at``."""
    yy, xx = np.ogrid[:ncc.shape[0], :ncc.shape[1]]
    away = (yy - at[0]) ** 2 + (xx - at[1]) ** 2 > exclude_px ** 2
    cand = np.where(away & (ncc == ndi.maximum_filter(ncc, size=3)), ncc, -np.inf)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(cand)), ncc.shape))


def _highpass(image: np.ndarray, sigma: float, background: float) -> np.ndarray:
    """Smoothed at ``sigma`` (noise) with the slow background at ``background`` removed (charging drift)."""
    a = np.asarray(image, np.float64)
    return ndi.gaussian_filter(a, sigma) - ndi.gaussian_filter(a, background)


def _shift_sigma(fit: np.ndarray, at: tuple[int, int], samples: float) -> float:
    """Standard deviation (px) of the optimum of a :func:`_fit_map` map that noise alone gives, along the less
    certain axis.

    The map is the correlation rho of a least-squares fit at each shift. Near the optimum the residual grows as
    ``T (rho0**2 - rho**2)`` (T the image's sum of squares), and the noise's variance per independent sample is
    ``T (1 - rho0**2) / samples``; the shift's covariance, twice the noise variance over the residual's Hessian,
    is then ``(1 - rho0**2) / (samples * rho0) * inv(-H)``, with H the Hessian of rho at the optimum ``at`` (row,
    column), by finite differences. ``samples`` counts independent noise samples (pixels over the correlation
    area of the smoothing). Infinite when the map does not curve down along some axis.
    """
    f = np.asarray(fit, np.float64)
    i, j = at
    rho = float(f[i, j])
    if not (0 < i < f.shape[0] - 1 and 0 < j < f.shape[1] - 1) or not 0 < rho < 1:
        return float("nan")
    hxx = f[i, j + 1] - 2 * rho + f[i, j - 1]
    hyy = f[i + 1, j] - 2 * rho + f[i - 1, j]
    hxy = (f[i + 1, j + 1] - f[i + 1, j - 1] - f[i - 1, j + 1] + f[i - 1, j - 1]) / 4
    curve = -np.array([[hxx, hxy], [hxy, hyy]])
    if np.linalg.eigvalsh(curve)[0] <= 0:
        return float("inf")
    cov = (1 - rho ** 2) / (samples * rho) * np.linalg.inv(curve)
    return float(np.sqrt(max(cov[0, 0], cov[1, 1])))


def _fit_map(search: list[np.ndarray], template: np.ndarray) -> np.ndarray:
    """How well the template is explained, at every 'valid' position, by a linear mix of the search maps.

    For each position the template window is regressed on the windows of the search
    maps (with a constant); the result is the correlation of the fit (the square root
    of R squared, 0 to 1). With the design's fill and its edge line as the two maps,
    this finds the design in an image whatever the tone (the fill's weight takes either
    sign) and whether edges show as a step, a bright ridge or both.
    """
    from scipy.signal import fftconvolve

    t = np.asarray(template, np.float64)
    t = t - t.mean()
    tt = float((t * t).sum())
    h, w = t.shape
    n = h * w

    k = len(search)
    sums = [_window_sums(s, h, w) for s in search]
    cross = [fftconvolve(s, t[::-1, ::-1], mode="valid") for s in search]  # template is centred: no mean term
    gram = np.empty(cross[0].shape + (k, k))
    for i in range(k):
        for j in range(i, k):
            gram[..., i, j] = gram[..., j, i] = _window_sums(search[i] * search[j], h, w) - sums[i] * sums[j] / n
    b = np.stack(cross, axis=-1)
    scale = np.einsum("...ii->...i", gram).max(axis=-1, keepdims=True)[..., None]
    ok = scale[..., 0, 0] > 1e-3 * float(scale.max())
    gram = gram + np.eye(k) * 1e-9 * np.maximum(scale, 1e-12)
    sol = np.linalg.solve(gram, b[..., None])[..., 0]
    r2 = np.clip((sol * b).sum(axis=-1) / (tt + 1e-12), 0, 1)
    return np.where(ok, np.sqrt(r2), 0.0)


#: Charging tails (px) modelled along the scan: a charged feature leaves a tail that decays over a few to a few
#: tens of pixels after each edge along the fast scan (+x); a linear mix of these two covers that range.
SCAN_TAILS_PX = (4.0, 16.0)


#: Tail lengths (px) tried for the sub-pixel refinement, one at a time. A charging tail trailing each edge along the
#: scan moves both edges of a feature the same way, as a shift would: a free mix of tails can pass for a shift of
#: a pixel or more, and the refinement then fits the tail instead of the edge. One tail, of the length that
#: explains the image best, cannot. Tails shorter than the shortest here look like an edge shifted by a fraction
#: of a pixel, and are left to the edge.
TAIL_GRID_PX = (6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 32.0, 40.0)
#: The refinement also fits the printed design smoothed at this many edge scales: the image's own blur, which the
#: edge scale need not match, is taken up by it. Without it the tail took part of the blur's mismatch on the
#: trailing edges, and with it a shift along the scan (0.2 px on blocks blurred by 1.5 px, with no tail drawn).
BLUR_MAP_SCALE = 2.0


def _scan_tails(fill: np.ndarray, tails: tuple = SCAN_TAILS_PX) -> list[np.ndarray]:
    """What a charging tail along the fast scan (+x) adds to an image of ``fill``, one map per tail length."""
    from scipy.signal import lfilter

    out = []
    for tail in tails:
        a = float(np.exp(-1.0 / tail))
        start = fill[:, :1]
        lagged = lfilter([1 - a], [1, -a], fill - start, axis=1) + start
        out.append(lagged - fill)
    return out


def _design_maps(fill: np.ndarray, sigma: float, tails: tuple = SCAN_TAILS_PX) -> list[np.ndarray]:
    """The maps an SEM image of the design is fitted by: its fill, its edge line and its charging tails."""
    return [fill, ndi.gaussian_gradient_magnitude(fill, sigma), *_scan_tails(fill, tails)]


def _sigma_px(pixel_size_nm: float) -> float:
    """Smoothing and edge-line scale: about 2 nm, at least 1 px, at most 3 px."""
    return float(np.clip(2.0 / pixel_size_nm, 1.0, 3.0))


#: An alignment is flagged when the edges alone (background removed at the fine scale) put the optimum further
#: than this (px) from the whole features' optimum, or from the refined site.
MAX_SCALE_DISAGREEMENT_PX = 1.5
#: The sub-pixel refinement looks this far (px) around the whole-feature optimum ...
FINE_SEARCH_PX = 3
#: ... re-centred on its best shift at most this many times while that lies on the window's edge (a long line
#: with its ends in the field: the whole features fit equally well all along it) ...
FINE_RECENTRES = 6
#: ... with the background removed at this scale (px, at least 3 edge scales): charging tails along the scan
#: and drift are slower than edges, and leave the refinement alone.
FINE_BACKGROUND_PX = 8.0
#: The refined fit must drop by at least this fraction of its optimum FINE_SEARCH_PX px away along both axes;
#: along lines that run past the field it stays flat, and nothing fixes the position along them.
MIN_PINNING = 0.01
#: Along the scan (x) it must drop by at least this much, measured FINE_SEARCH_PX px each side of the optimum: there
#: the charging tail in the fit can take up part of a shift (a fill and a tail a few pixels apart explain an image
#: whose charging step outweighs its material step as well as the true pair do), and a fit that only just drops
#: does not fix the position.
MIN_PINNING_ALONG_SCAN = 0.02
#: A coarse proposal whose refined fit is worse than the best by more than this lies in another basin.
CLEARLY_WORSE_FIT = 0.05
#: The whole features' fit at the refined optimum, at least this fraction of its best, is a plateau: the edges
#: choose along it and do not disagree with it. A printed pattern (rough edges, pulled-back line ends) moves the
#: whole features' optimum a few px along their broad peak: on the second renderer (bench_layout.py, seeds 12 and
#: 312) sites refined within 0.5 px of the truth kept 0.95-0.99 of the best fit there 2-5 px from it, while the
#: sites refined 1.6 and 5.4 px off (low contrast) kept 0.85-0.86.
PLATEAU = 0.93
#: Printed-design models tried by the sub-pixel refinement, (Gaussian sigma in nm, level): lithography prints
#: a design blurred and cut at a dose-dependent level, so line ends pull back and corners round. Matching the
#: drawn design to such a print pulls the optimum towards whichever end or corner shows the stronger edge; the
#: model that explains the image best sets the refinement instead.
PRINT_MODELS = ((0.0, 0.5),) + tuple((s, t) for s in (5.0, 9.0, 14.0) for t in (0.35, 0.5, 0.65))


def _background_px(shape: tuple[int, int]) -> float:
    return max(8.0, min(shape) / 8)


def align_to_design(image: np.ndarray, polygons_nm: list, site: Site, *, search_nm: float = 150.0,
                    field: tuple[int, int, int, int] | None = None, min_score: float = MIN_ALIGN_SCORE,
                    max_ambiguity: float = MAX_ALIGN_AMBIGUITY, print_models: tuple = PRINT_MODELS) -> Alignment:
    """Register the design, rasterised at the image's pixel size, to the image.

    At every shift within +-``search_nm`` the image is fitted by a linear mix of the
    design's fill and of its edge line (both smoothed, slow background removed from all);
    the shift that explains the image best is one proposal, and the same fit with charging
    tails along the scan added to the mix is another (a strong tail can pull the first onto
    itself). Each proposal is refined within a few pixels, with the background removed at a
    few edge widths (so a tail trailing each edge does not pull it), to sub-pixel precision
    by a parabola in each axis; the window follows the optimum while it lies on its edge
    (along a long line the whole features fit equally well). The refinement tries the
    design as drawn and as lithography prints it (blurred and cut at a level: line ends
    pulled back, corners rounded; :data:`PRINT_MODELS`), with one charging tail in the fit, of
    the length that explains the image best (:data:`TAIL_GRID_PX`; a free mix of lengths
    could pass for a shift along the scan), and the proposal and model that explain the
    image best win. The alignment is flagged (``ok``
    False, with the reason) when it scores low, when a second optimum fits nearly as well
    and the refinement started there ends elsewhere (a repeating pattern), when it lies at
    the search limit, when the fit barely drops a few pixels from its optimum along one axis
    (lines longer than the field) or along the scan (a charging tail that outweighs the
    material step can stand in for a shift along it), or when the edges alone put the
    optimum elsewhere than the whole features do. The fill's weight may take either sign
    and the edge line's weight may be zero, so features darker or brighter than their
    surroundings, with or without a bright edge ridge, align alike.

    Parameters
    ----------
    image : (M, N) ndarray
    polygons_nm : list of (K, 2) ndarray
        Design polygons near the site, layout nm.
    site : Site
        The nominal site.
    search_nm : float
        Largest correction searched, each axis.
    field : (x0, y0, x1, y1), optional
        The image's field (the data bar left out).
    print_models : tuple of (float, float)
        Printed-design models the refinement tries, (blur sigma nm, level); ``((0.0, 0.5),)``
        aligns the design as drawn.

    Returns
    -------
    Alignment
    """
    rows, cols = image.shape
    ps = site.pixel_size_nm
    m = int(np.ceil(search_nm / ps)) + 1
    sigma = _sigma_px(ps)
    x0, y0, x1, y1 = field if field is not None else (0, 0, cols, rows)
    canvas = rasterize_polygons([site.to_pixels(p) for p in polygons_nm], (rows + 2 * m, cols + 2 * m),
                                origin=(-m, -m))
    if not canvas.any():
        return Alignment(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, False, "no design polygon near the site")
    design_maps = _design_maps(canvas, sigma)

    def highpass_field(bg: float) -> np.ndarray:
        return _highpass(image, sigma, bg)[y0:y1, x0:x1]

    def fit_map(maps: list, bg: float, img: np.ndarray, crop: tuple = (slice(None), slice(None))) -> np.ndarray:
        return _fit_map([_highpass(a, sigma, bg)[crop] for a in maps], img)

    # which shift: the whole features count (robust to a repeating pattern). Two coarse fits propose it: fill and
    # edge only, and the same with charging tails along the scan. The tails blur the distinction between optima
    # one shift apart, but without them a strong tail can pull the optimum onto the tail itself.
    coarse_bg = _background_px((y1 - y0, x1 - x0))
    coarse_img = highpass_field(coarse_bg)
    exclude = max(3.0, 3 * sigma)
    proposals, seconds, fits = [], [], []
    for maps in (design_maps[:2], design_maps):
        fit = fit_map(maps, coarse_bg, coarse_img)
        fits.append(fit)
        _, _, sc, am = _peak(fit, exclude_px=exclude)
        proposals.append((*np.unravel_index(int(np.argmax(fit)), fit.shape), sc, am))
        seconds.append(_second_peak(fit, proposals[-1][:2], exclude_px=exclude))
    # where exactly: only what changes over a few px counts, so a charging tail trailing each edge along the
    # scan, or a slow drift, does not pull the optimum
    fine_bg = max(FINE_BACKGROUND_PX, 3 * sigma)
    img = highpass_field(fine_bg)
    pad = int(np.ceil(4 * (fine_bg + max(b for b, _ in print_models) / ps)))
    n_rows, n_cols = canvas.shape[0] - img.shape[0] + 1, canvas.shape[1] - img.shape[1] + 1

    def window(r: int, c: int, k: int) -> tuple[int, int, tuple]:
        """Top-left (row, col) of the positions within k of (r, c), and the part of the canvas they cover."""
        r0, c0 = max(0, r - k), max(0, c - k)
        r1, c1 = min(n_rows, r + k + 1), min(n_cols, c + k + 1)
        return r0, c0, (r0, c0, r1 - 1 + img.shape[0], c1 - 1 + img.shape[1])

    def tail_length(r: int, c: int) -> float:
        """The tail length of TAIL_GRID_PX that, with the whole features, explains the image best near (r, c)."""
        _, _, box = window(r, c, FINE_SEARCH_PX)
        crop = (slice(box[0], box[2]), slice(box[1], box[3]))
        base = [_highpass(a, sigma, coarse_bg)[crop] for a in design_maps[:2]]
        fits_t = [_fit_map(base + [_highpass(t, sigma, coarse_bg)[crop]], coarse_img).max()
                  for t in _scan_tails(canvas, TAIL_GRID_PX)]
        return TAIL_GRID_PX[int(np.argmax(fits_t))]

    def fine_fit(r: int, c: int, k: int, tail: float) -> tuple[int, int, object]:
        """Top-left (row, col) of the positions within k of (r, c), and the fine fit there of a print model."""
        r0, c0, box = window(r, c, k)
        # the filters reach this far, and a tail this far back along the scan: work on the part of the canvas around
        # the box only
        q0, q1 = max(0, box[0] - pad), max(0, box[1] - max(pad, int(4 * tail)))
        part = canvas[q0:box[2] + pad, q1:box[3] + pad]
        inner = (slice(box[0] - q0, box[2] - q0), slice(box[1] - q1, box[3] - q1))

        def fit(model: tuple) -> np.ndarray:
            blur_nm, level = model
            printed = part if blur_nm == 0 else (ndi.gaussian_filter(part, blur_nm / ps) > level).astype(float)
            blurred = ndi.gaussian_filter(printed, BLUR_MAP_SCALE * sigma)
            return fit_map(_design_maps(printed, sigma, (tail,)) + [blurred], fine_bg, img, inner)

        return r0, c0, fit

    def refine(r: int, c: int) -> tuple[float, float, float, tuple, float, float]:
        """Best (score, x, y, print model, pinning, tail length) within FINE_SEARCH_PX of (r, c), re-centred while
        it sits on the window's edge. The pinning is how much the fit drops from the optimum to the window's edge
        along the flatter axis, relative to the optimum: about 0 when nothing fixes the position along that axis.
        The tail length is chosen once, at (r, c)."""
        k = FINE_SEARCH_PX
        tail = tail_length(r, c)
        for _ in range(FINE_RECENTRES + 1):
            r0, c0, fine = fine_fit(r, c, k, tail)
            best = (-1.0, 0.0, 0.0, print_models[0], 0.0, tail)
            for blur_nm, level in print_models:
                fm = fine((blur_nm, level))
                x, y, sc, _ = _peak(fm, exclude_px=np.inf)
                if sc > best[0]:
                    pr, pc = np.unravel_index(int(np.argmax(fm)), fm.shape)
                    drop = min(sc - max(fm[0, pc], fm[-1, pc]), sc - max(fm[pr, 0], fm[pr, -1]))
                    best = (sc, x + c0, y + r0, (blur_nm, level), float(drop / sc) if sc > 0 else 0.0, tail)
            nr, nc = int(round(best[2])), int(round(best[1]))
            # a long line or a wide plateau of the coarse fit: the optimum lies further along, follow it
            if max(abs(nr - r), abs(nc - c)) < k or not (0 <= nr < n_rows and 0 <= nc < n_cols):
                break
            r, c = nr, nc
        return best

    refined = [refine(int(r), int(c)) for r, c, _, _ in proposals[:1]]
    if np.hypot(proposals[1][0] - proposals[0][0], proposals[1][1] - proposals[0][1]) > 1.0:
        refined.append(refine(int(proposals[1][0]), int(proposals[1][1])))
    won = int(np.argmax([f[0] for f in refined]))
    _, x, y, print_model, pinned, tail = refined[won]
    _, _, score, amb = proposals[won]
    second = seconds[won]
    dx_px, dy_px = x - (m + x0), y - (m + y0)
    # the edges alone (the fine fit over the whole search) should agree with the whole features on where the
    # optimum is; when they put it elsewhere, something slow (strong charging tails, drift) drives one of them.
    # The fit without tails is the one asked, unless it fell into another basin that fits clearly worse: then
    # the tails had fooled it, and the fit with tails is asked.
    fine_all = fit_map(_design_maps(canvas, sigma, (tail,)), fine_bg, img)
    fr, fc = np.unravel_index(int(np.argmax(fine_all)), fine_all.shape)
    fooled = won == 1 and (np.hypot(refined[0][1] - x, refined[0][2] - y) > 1.0
                           and refined[0][0] < refined[1][0] - CLEARLY_WORSE_FIT)
    disagree = float(np.hypot(fr - proposals[won if fooled else 0][0], fc - proposals[won if fooled else 0][1]))
    # the refined site too: a refinement that left both the whole features' optimum and the edges' for a print
    # model and tail of its own, 3 px away, had nothing in the image to agree with it
    disagree = max(disagree, float(np.hypot(fr - y, fc - x)))
    # unless the whole features cannot tell the two apart: their fit at the refined optimum is as good as at their
    # own (a plateau along a long line), and the edges pin the position
    at = fits[0][int(np.clip(round(y), 0, n_rows - 1)), int(np.clip(round(x), 0, n_cols - 1))]
    if pinned >= MIN_PINNING and at >= PLATEAU * fits[0].max():
        disagree = 0.0
    # a second coarse optimum is a rival only when the fine stage, started there, ends elsewhere (a period of a
    # grating); along a long line or a plateau it climbs back to the same optimum
    ambiguous = amb > max_ambiguity
    if ambiguous:
        rival = refine(*second)
        ambiguous = bool(np.hypot(rival[1] - x, rival[2] - y) > 1.0) or pinned < MIN_PINNING
    dx_nm, dy_nm = site.pixel_shift_to_layout(dx_px, dy_px)
    why = []
    if score < min_score:
        why.append(f"low alignment score {score:.2f} < {min_score:g}")
    if ambiguous:
        why.append(f"ambiguous alignment (second peak {amb:.2f} of the best)")
    if max(abs(dx_px), abs(dy_px)) >= m - 1.5:
        why.append(f"optimum at the search limit ({search_nm:g} nm)")
    # along the scan, how much the fit drops FINE_SEARCH_PX px each side of the optimum
    yr, xc = int(np.clip(round(y), 0, n_rows - 1)), int(np.clip(round(x), 0, n_cols - 1))
    r0, c0, fine = fine_fit(yr, xc, FINE_SEARCH_PX, tail)
    fmap = fine(print_model)
    along = fmap[yr - r0]
    # noise correlates over the smoothing's area (4 pi sigma**2 px for a Gaussian of sigma px)
    sigma_px = _shift_sigma(fmap, (yr - r0, xc - c0), img.size / max(1.0, 4 * np.pi * sigma ** 2))
    sides = [along[j] for j in (xc - c0 - FINE_SEARCH_PX, xc - c0 + FINE_SEARCH_PX) if 0 <= j < along.size]
    along_scan = 1.0 - max(sides) / along[xc - c0] if sides and along[xc - c0] > 0 else 0.0
    if pinned < MIN_PINNING:
        why.append(f"nothing in the field fixes the position along one axis (the fit drops {pinned:.1%} "
                   f"{FINE_SEARCH_PX} px from its optimum; lines longer than the field?)")
    elif along_scan < MIN_PINNING_ALONG_SCAN:
        why.append(f"the fit drops only {along_scan:.1%} {FINE_SEARCH_PX} px along the scan from its optimum: a "
                   f"charging tail could stand in for a shift along it")
    if disagree > MAX_SCALE_DISAGREEMENT_PX:
        why.append(f"the edges alone put the optimum {disagree:.0f} px away (charging or drift?)")
    return Alignment(dx_nm, dy_nm, float(dx_px), float(dy_px), score, amb, not why, "; ".join(why), print_model,
                     float(tail), sigma_px)


def register_images(image: np.ndarray, reference: np.ndarray, *, pixel_size_nm: float, search_nm: float = 150.0,
                    rotation_deg: float = 0.0, min_score: float = MIN_ALIGN_SCORE,
                    max_ambiguity: float = MAX_ALIGN_AMBIGUITY) -> Alignment:
    """Register an image to a reference image of the same site, by the same edge-map correlation.

    Returns the shift of the image's content against the reference's: a feature at pixel
    ``p`` of the reference is at ``p + (dx_px, dy_px)`` in the image. ``dx_nm``, ``dy_nm``
    is the same shift in layout axes: add it to the reference's site to get the image's.
    """
    if image.shape != reference.shape:
        raise SegSEMError(f"reference image of {reference.shape[1]}x{reference.shape[0]} px differs from the image "
                          f"of {image.shape[1]}x{image.shape[0]} px")
    ps = float(pixel_size_nm)
    m = int(np.ceil(search_nm / ps))
    rows, cols = image.shape
    if rows <= 2 * m + 16 or cols <= 2 * m + 16:
        m = max(1, min(rows, cols) // 4)
    sigma = _sigma_px(ps)
    bg = _background_px(image.shape)
    a, b = _highpass(reference, sigma, bg), _highpass(image, sigma, bg)
    # the central part of the reference, searched for in the image
    ncc = _ncc(b, a[m:rows - m, m:cols - m])
    x, y, score, amb = _peak(ncc, exclude_px=max(3.0, 3 * sigma))
    dx_px, dy_px = x - m, y - m
    site = Site((0.0, 0.0), ps, image.shape, rotation_deg)
    # the image's centre sees the reference's point centre - shift: its site is reference site - shift
    dx_nm, dy_nm = site.pixel_shift_to_layout(-dx_px, -dy_px)
    why = []
    if score < min_score:
        why.append(f"low registration score {score:.2f} < {min_score:g}")
    if amb > max_ambiguity:
        why.append(f"ambiguous registration (second peak {amb:.2f} of the best)")
    return Alignment(dx_nm, dy_nm, float(dx_px), float(dy_px), score, amb, not why, "; ".join(why))


@dataclass(frozen=True)
class Placement:
    """An image placed on its design.

    Attributes
    ----------
    nominal : Site
        The site meta.csv gives.
    site : Site
        The site used: the nominal one corrected by the alignment when it is trusted.
    alignment : Alignment
    polygons : dict of int to (K, 2) ndarray
        Design polygons near the site by id (layout nm).
    source : str
        The layout file and layer, for messages.
    """

    nominal: Site
    site: Site
    alignment: Alignment
    polygons: dict
    source: str

    def polygons_px(self) -> dict:
        """The design polygons in the image's pixel coordinates, by id."""
        return {k: self.site.to_pixels(p) for k, p in self.polygons.items()}


# ----------------------------------------------------------------------------- gauges

def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def edge_gauges(polygon_nm: np.ndarray, step_nm: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Gauge points along a design polygon's edges and their outward normals (layout axes).

    Each edge of length L gets ``max(1, floor(L / step))`` gauges, evenly spaced with half
    a spacing from each corner.

    Returns
    -------
    points : (G, 2) ndarray
    normals : (G, 2) ndarray
        Unit vectors pointing out of the polygon.
    """
    if not step_nm > 0:
        raise SegSEMError(f"gauge step {step_nm!r}: expected a positive number of nm")
    p = np.asarray(polygon_nm, float)
    if len(p) > 1 and np.allclose(p[0], p[-1]):
        p = p[:-1]
    ccw = _signed_area(p) > 0
    pts, nrm = [], []
    for a, b in zip(p, np.roll(p, -1, axis=0)):
        d = b - a
        length = float(np.hypot(*d))
        if length <= 1e-9:
            continue
        n = max(1, int(length // step_nm))
        t = (np.arange(n) + 0.5) / n
        pts.append(a + np.outer(t, d))
        out = np.array([d[1], -d[0]]) / length  # right of the direction: outward for a CCW polygon (y up)
        nrm.append(np.repeat((out if ccw else -out)[None], n, axis=0))
    if not pts:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.vstack(pts), np.vstack(nrm)


def _crossings(origins: np.ndarray, dirs: np.ndarray, contours: list) -> tuple[np.ndarray, np.ndarray]:
    """For each line origin + t * dir: parameters t of every crossing with the contours (rows) and a validity mask."""
    segs = []
    for c in contours:
        c = np.asarray(c, float)
        if len(c) < 2:
            continue
        if not np.allclose(c[0], c[-1]):
            c = np.vstack([c, c[:1]])
        segs.append(np.hstack([c[:-1], c[1:]]))
    if not segs:
        return np.zeros((len(origins), 0)), np.zeros((len(origins), 0), bool)
    s = np.vstack(segs)
    a, e = s[None, :, :2], s[None, :, 2:] - s[None, :, :2]
    o, d = origins[:, None, :], dirs[:, None, :]
    den = d[..., 0] * e[..., 1] - d[..., 1] * e[..., 0]
    w = a - o
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[..., 0] * e[..., 1] - w[..., 1] * e[..., 0]) / den
        u = (w[..., 0] * d[..., 1] - w[..., 1] * d[..., 0]) / den
    valid = (np.abs(den) > 1e-12) & (u >= 0) & (u < 1)
    return np.where(valid, t, np.nan), valid


def gauge_epe(points: np.ndarray, normals: np.ndarray, contours_nm: list, *, search_nm: float = 30.0) -> np.ndarray:
    """Signed EPE (nm) at each gauge: distance along the outward normal from the design edge
    to the nearest crossing of the contour within +-``search_nm``; NaN where none crosses."""
    if len(points) == 0:
        return np.zeros(0)
    t, valid = _crossings(np.asarray(points, float), np.asarray(normals, float), contours_nm)
    if t.shape[1] == 0:
        return np.full(len(points), np.nan)
    t = np.where(valid & (np.abs(t) <= search_nm), t, np.nan)
    idx = np.nanargmin(np.where(np.isnan(t), np.inf, np.abs(t)), axis=1)
    best = t[np.arange(len(t)), idx]
    return best


def read_cutlines(path: str | Path) -> np.ndarray:
    """Cutline gauges from a CSV with columns ``x1,y1,x2,y2`` (layout nm; an optional ``name``).

    Returns (G, 4) ndarray; raises SegSEMError naming the file and the bad row.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path)
    except Exception as exc:
        raise SegSEMError(f"{path}: unreadable gauge file ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    missing = [c for c in ("x1", "y1", "x2", "y2") if c not in table.columns]
    if missing:
        raise SegSEMError(f"{path}: expected columns x1,y1,x2,y2 (cutlines in layout nm), missing {missing}")
    vals = table[["x1", "y1", "x2", "y2"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(vals).all(axis=1) | (np.hypot(vals[:, 2] - vals[:, 0], vals[:, 3] - vals[:, 1]) == 0)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise SegSEMError(f"{path}: row {i + 2}: {table.iloc[i].to_dict()}; expected a cutline of two distinct "
                          f"points in nm")
    return vals


def cutline_cd(cutlines: np.ndarray, contours_nm: list) -> np.ndarray:
    """CD (nm) along each cutline: between the crossings nearest its midpoint on either side; NaN when the
    contours do not cross it on both sides."""
    cut = np.asarray(cutlines, float).reshape(-1, 4)
    if len(cut) == 0:
        return np.zeros(0)
    a, b = cut[:, :2], cut[:, 2:]
    mid = (a + b) / 2
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    t, valid = _crossings(mid, d / length[:, None], contours_nm)
    if t.shape[1] == 0:
        return np.full(len(cut), np.nan)
    half = (length / 2)[:, None]
    neg = np.where(valid & (t <= 0) & (t >= -half), t, -np.inf).max(axis=1)
    pos = np.where(valid & (t > 0) & (t <= half), t, np.inf).min(axis=1)
    cd = pos - neg
    return np.where(np.isfinite(cd), cd, np.nan)


def epe_summary(epe_nm: np.ndarray) -> dict:
    """Mean and maximum of the absolute EPE, mean signed EPE (bias) and 3-sigma of EPE (nm), over the gauges
    that met a contour."""
    e = np.asarray(epe_nm, float)
    e = e[np.isfinite(e)]
    if not e.size:
        return {"epe_mean_nm": np.nan, "epe_bias_nm": np.nan, "epe_3sigma_nm": np.nan, "epe_max_nm": np.nan,
                "gauges": 0}
    return {"epe_mean_nm": float(np.abs(e).mean()), "epe_bias_nm": float(e.mean()),
            "epe_3sigma_nm": float(3 * e.std()), "epe_max_nm": float(np.abs(e).max()), "gauges": int(e.size)}


# ----------------------------------------------------------------------------- export

def write_layout_contours(path: str | Path, sites: dict, contours_nm: dict, *, layer: tuple[int, int] = (100, 0),
                          gauges: dict | None = None, gauge_layer: tuple[int, int] = (101, 0),
                          top: str = "SEGSEM") -> Path:
    """Contours in layout coordinates: one cell per image placed at its (aligned) site.

    Parameters
    ----------
    path : path
        ``.gds`` or ``.oas``.
    sites : dict
        ``{stem: Site}`` (aligned).
    contours_nm : dict
        ``{stem: {label: [contour (K, 2) in layout nm, ...]}}``; each contour is a polygon
        (an outer boundary or a hole's; overlaid, a viewer shows both).
    gauges : dict, optional
        ``{stem: [(x_nm, y_nm, nx, ny, epe_nm, name), ...]}``: each gauge is drawn as a path
        from the design edge to the contour, with a label giving its EPE.

    Returns
    -------
    Path
    """
    import gdstk

    from .dataset import atomic_write

    path = Path(path)
    lib = gdstk.Library(name="SEGSEM", unit=1e-9, precision=1e-12)
    top_cell = lib.new_cell(top)
    for stem, site in sites.items():
        cell = lib.new_cell(f"IMG_{stem}"[:120])
        cx, cy = site.center_nm
        for label, cs in contours_nm.get(stem, {}).items():
            for c in cs:
                pts = np.asarray(c, float)
                if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
                    pts = pts[:-1]
                if len(pts) < 3:
                    continue
                cell.add(gdstk.Polygon(pts - (cx, cy), layer=layer[0], datatype=layer[1]))
            if cs and len(cs[0]) >= 3:
                c0 = np.asarray(cs[0], float).mean(axis=0) - (cx, cy)
                cell.add(gdstk.Label(str(label), tuple(c0), layer=layer[0], texttype=layer[1]))
        for x, y, nx, ny, epe, name in (gauges or {}).get(stem, []):
            p = np.array([x - cx, y - cy])
            if np.isfinite(epe) and abs(epe) > 1e-3:
                # a 0.2 nm wide bar from the design edge to the contour
                n, side = np.array([nx, ny]), 0.1 * np.array([-ny, nx])
                q = p + epe * n
                cell.add(gdstk.Polygon([tuple(p - side), tuple(q - side), tuple(q + side), tuple(p + side)],
                                       layer=gauge_layer[0], datatype=gauge_layer[1]))
            text = f"{name} epe={epe:+.2f}" if np.isfinite(epe) else f"{name} epe=nan"
            cell.add(gdstk.Label(text, tuple(p), layer=gauge_layer[0], texttype=gauge_layer[1]))
        top_cell.add(gdstk.Reference(cell, origin=(cx, cy)))
    oas = path.suffix.lower() in (".oas", ".oasis")
    return atomic_write(path, lambda tmp: lib.write_oas(str(tmp)) if oas else lib.write_gds(str(tmp), max_points=8190))
