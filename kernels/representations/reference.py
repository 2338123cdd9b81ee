"""Slow, obvious numpy reference implementations of event representations: the test oracle.

Every function here is written for readability, not speed (plain Python loops over events and
pixels), and is meant to be the definition that faster kernels are tested against.

Conventions shared by all functions
-----------------------------------
* Input: a 1-D array of ``evstream.kernels.events.EVENT_DTYPE`` (``x``, ``y`` uint16 pixel column
  and row; ``t`` int64 microseconds; ``p`` uint8, 1 = ON, 0 = OFF), then ``width`` and ``height`` in
  pixels; representation parameters are keyword-only. Coordinates must lie inside the sensor and
  polarities must be 0 or 1 (``ValueError`` otherwise); the events need not be sorted by time, and
  every result is invariant to the order of the events.
* Output: a new ``float32`` array of shape ``(C, height, width)`` (``C`` documented per function).
  Arithmetic is done in float64 and rounded once at the end. The input is never written to and the
  output never shares memory with it. An empty input gives an all-zero array of the right shape.
* Normalised time: ``t_n = (t - t_min) / (t_max - t_min)`` in [0, 1], with ``t_min``/``t_max``
  taken over *all* events of the input (both polarities). When every event has the same timestamp
  (a single event, for instance) ``t_n = 1`` for every event: each one is then the most recent
  event, and 1 is also the limit of EST's ``t / t_max`` normalisation. N-ImageNet divides by zero
  here (NaN outputs); see the individual functions.

Sources
-------
N-ImageNet (Kim et al., ICCV 2021), repository 82magnolia/n_imagenet, file
``real_cnn_model/data/imagenet.py`` (identical copy in ``src/n_imagenet/data/imagenet.py``). Its
README maps the paper's names to loader functions: DiST -> ``reshape_then_acc_adj_sort``, Binary
Event Image -> ``reshape_then_flat_pol`` (the README misspells it ``reshape_then_acc_flat_pol``),
Event Image -> ``reshape_then_acc``, Timestamp Image -> ``reshape_then_acc_time_pol``, Event
Histogram -> ``reshape_then_acc_count_pol``, Sorted Time Surface -> ``reshape_then_acc_sort``; the
exponential time surface is ``reshape_then_acc_exp``.

Things N-ImageNet does before a representation, deliberately *not* part of this module:

* ``load_event`` converts timestamps to float64 seconds (``t / 1e6``) and polarity 0 to -1.
* ``parse_event`` optionally rescales the 640x480 sensor to 224x224 (``reshape_event_no_sample``
  multiplies x by 224/640 and y by 224/480 in place, keeping float coordinates that every
  representation later truncates with ``.long()``; ``reshape_event_with_sample`` and
  ``reshape_event_unique`` also subsample / deduplicate events). In evstream that is a separate
  geometry step: here coordinates are used exactly as given.
* Training-time augmentation (``base_augment``: random time flip with polarity inversion, random
  horizontal flip, random shift with out-of-frame events dropped) and slicing (``slice_event``).

EST (Gehrig et al., ICCV 2019), repository uzh-rpg/rpg_event_representation_learning, file
``utils/models.py``, class ``QuantizationLayer`` (with ``ValueLayer``): see ``voxel_grid``.

The exponential time surface follows HOTS (Lagorce et al., TPAMI 2017) / HATS (Sironi et al.,
CVPR 2018): see ``time_surface``.
"""

from __future__ import annotations

import math

import numpy as np

from ..events import EVENT_DTYPE

#: N-ImageNet's ``EXP_TAU``: time-surface decay constant as a fraction of the window duration.
EXP_TAU = 0.3
#: N-ImageNet's ``DISC_ALPHA``: weight of the temporal discount in DiST.
DIST_ALPHA = 3.0
#: N-ImageNet's DiST neighbourhood (``patch_size = 5`` inside ``reshape_then_acc_adj_sort``).
DIST_PATCH_SIZE = 5
#: N-ImageNet's ``CLIP_COUNT_RATE``: share of pixels below the DiST count clipping level.
DIST_CLIP_RATE = 0.99

_MEASUREMENTS = ("count", "polarity", "timestamp")


# --------------------------------------------------------------------------------------------
# Shared helpers


def check_events(events, width, height) -> np.ndarray:
    """``events`` as an ndarray after checking its dtype and shape and the sensor size (not the
    coordinates: see :func:`range_error`). Shared by every backend so they reject the same input."""
    events = np.asarray(events)
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"events must have dtype EVENT_DTYPE, got {events.dtype}")
    if events.ndim != 1:
        raise ValueError(f"events must be a 1-D array, got shape {events.shape}")
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return events


def check_patch_size(patch_size) -> None:
    """DiST's neighbourhood must be a positive odd size (centred on the pixel)."""
    if not isinstance(patch_size, int | np.integer) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be a positive odd integer, got {patch_size!r}")


def check_voxel_params(num_bins, measurement) -> None:
    """The voxel grid's bin count (a positive integer) and measurement (see ``voxel_grid``)."""
    if not isinstance(num_bins, int | np.integer) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    if measurement not in _MEASUREMENTS:
        raise ValueError(f"measurement must be one of {_MEASUREMENTS}, got {measurement!r}")


def check_tau(tau_us) -> float | None:
    """The time surface's decay constant in microseconds (None: the default), as a float > 0."""
    if tau_us is None:
        return None
    tau = float(tau_us)
    if not tau > 0.0:
        raise ValueError(f"tau_us must be positive, got {tau_us!r}")
    return tau


def range_error(x, y, p, width, height) -> str | None:
    """Why events with these fields do not fit a ``width x height`` sensor, or None if they do."""
    if len(x):
        if int(x.max()) >= width or int(y.max()) >= height:
            return f"event coordinates outside the {width}x{height} sensor (max x {x.max()}, max y {y.max()})"
        if int(p.max()) > 1:
            return f"polarity must be 0 or 1, got {p.max()}"
    return None


def _unpack(events, width, height):
    """Validated copies of the event fields: x, y, t (int64 arrays) and on (bool array)."""
    events = check_events(events, width, height)
    # astype always copies, so nothing below can write into the caller's array.
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    p = events["p"].astype(np.int64)
    error = range_error(x, y, p, width, height)
    if error:
        raise ValueError(error)
    return x, y, t, p == 1


def _normalised_time(t):
    """``(t - t_min) / (t_max - t_min)`` as float64; all ones when every timestamp is equal."""
    if len(t) == 0:
        return np.zeros(0, np.float64)
    t_min, t_max = int(t.min()), int(t.max())
    if t_max == t_min:
        return np.ones(len(t), np.float64)
    return (t - t_min) / float(t_max - t_min)


def _count(x, y, select, height, width):
    """Number of selected events at each pixel, (height, width) int64."""
    count = np.zeros((height, width), np.int64)
    for xi, yi, s in zip(x, y, select, strict=True):
        if s:
            count[yi, xi] += 1
    return count


def _latest(x, y, values, select, height, width):
    """Largest value of the selected events at each pixel (0 where none), and where there were any."""
    latest = np.zeros((height, width), np.float64)
    seen = np.zeros((height, width), bool)
    for xi, yi, v, s in zip(x, y, values, select, strict=True):
        if s and (not seen[yi, xi] or v > latest[yi, xi]):
            latest[yi, xi] = v
            seen[yi, xi] = True
    return latest, seen


# --------------------------------------------------------------------------------------------
# N-ImageNet representations


def event_histogram(events, width, height):
    """Event histogram (Maqueda et al., CVPR 2018): events counted per pixel and polarity.

    Formula: ``H[c, y, x] = #{events i : x_i = x, y_i = y, p_i = P(c)}``, ``P(0) = ON (p = 1)``,
    ``P(1) = OFF (p = 0)``. Unit: events.

    Output: float32 ``(2, height, width)``, channels ``[ON count, OFF count]``.

    N-ImageNet: ``reshape_then_acc_count_pol`` in ``real_cnn_model/data/imagenet.py``
    (``torch.bincount`` of ``x + y * W`` per polarity, stacked positive first). Not copied: the
    flat index ``x + y * W`` silently wraps an out-of-range ``x`` into the next row (or fails in
    ``reshape``); here out-of-sensor coordinates raise ``ValueError``.
    """
    x, y, _, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    for xi, yi, oi in zip(x, y, on, strict=True):
        out[0 if oi else 1, yi, xi] += 1.0
    return out.astype(np.float32)


def binary_event_image(events, width, height):
    """Binary event image (Cannici et al.): 1 where a pixel saw at least one event of a polarity.

    Formula: ``B[c, y, x] = 1 if H[c, y, x] > 0 else 0`` with ``H`` the ``event_histogram``.
    Unitless, values in {0, 1}.

    Output: float32 ``(2, height, width)``, channels ``[ON, OFF]``.

    N-ImageNet: ``reshape_then_flat_pol`` in ``real_cnn_model/data/imagenet.py`` (writes 1.0 at
    the truncated coordinates of each polarity's events, stacked positive first; the README calls
    it ``reshape_then_acc_flat_pol``). Nothing of its behaviour is dropped except that coordinates
    must lie inside the sensor (negative coordinates would index from the far edge there).
    """
    x, y, _, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    for xi, yi, oi in zip(x, y, on, strict=True):
        out[0 if oi else 1, yi, xi] = 1.0
    return out.astype(np.float32)


def event_image(events, width, height):
    """Event image (Zhu et al., EV-FlowNet, RSS 2018): normalised counts and latest times.

    Formula, per polarity ``P``:

    * count channel: ``H_P[y, x] / max(H_P)`` (``H_P`` the per-pixel count of polarity ``P``;
      0 everywhere when that polarity has no events), in [0, 1];
    * time channel: ``max{t_n,i : event i of polarity P at (x, y)}``, 0 where there is none, in
      [0, 1], with ``t_n`` the normalised time of the module docstring (over all events).

    Output: float32 ``(4, height, width)``, channels
    ``[ON count / max ON count, ON latest t_n, OFF count / max OFF count, OFF latest t_n]``.

    N-ImageNet: ``reshape_then_acc`` in ``real_cnn_model/data/imagenet.py`` (``bincount`` per
    polarity divided by its max; ``scatter_max`` of ``(t - t[0]) / (t[-1] - t[0])``, 0 for empty
    pixels as torch_scatter fills them). Quirks not copied:

    * it normalises by the first and last events *in array order* (``event_tensor[0, 2]`` and
      ``event_tensor[-1, 2]``), which is only the time range for time-sorted input (otherwise
      values leave [0, 1]); we use the minimum and maximum timestamps;
    * a polarity without events gives ``0 / 0 = NaN`` in its count channel; we give 0;
    * a single event or an all-equal timestamp window gives ``0 / 0 = NaN`` times; we use
      ``t_n = 1``;
    * an empty input crashes (``event_tensor[0, 2]``); we return zeros.

    As in N-ImageNet, a pixel whose latest event is the earliest of the window has time 0, the
    same as an empty pixel; the count channel tells them apart.
    """
    x, y, t, on = _unpack(events, width, height)
    tn = _normalised_time(t)
    out = np.zeros((4, height, width), np.float64)
    for c, select in ((0, on), (2, ~on)):
        count = _count(x, y, select, height, width)
        if count.max() > 0:
            out[c] = count / count.max()
        out[c + 1], _ = _latest(x, y, tn, select, height, width)
    return out.astype(np.float32)


def timestamp_image(events, width, height):
    """Timestamp image (Park et al., 2016): the latest normalised timestamp per pixel and polarity.

    Formula: ``T[c, y, x] = max{t_n,i : event i of polarity P(c) at (x, y)}``, 0 where there is
    none; ``t_n`` is the normalised time of the module docstring (over all events of both
    polarities), so values are in [0, 1] and 1 marks the most recent event of the window.

    Output: float32 ``(2, height, width)``, channels ``[ON, OFF]``.

    N-ImageNet: ``reshape_then_acc_time_pol`` in ``real_cnn_model/data/imagenet.py``
    (``scatter_max`` of ``(t - t[0]) / (t[-1] - t[0])`` per polarity, positive first). Quirks not
    copied:

    * an empty input is replaced by ten fake ON events at pixel (0, 0) with times 0.0 .. 0.9 s, so
      the output has a spurious 1.0 at ``[0, 0, 0]``; we return zeros;
    * first/last events in array order as the time range (see ``event_image``); we use min/max;
    * a single event (or equal timestamps) divides 0 by 0 (NaN); we use ``t_n = 1``.

    As in N-ImageNet, a pixel whose latest event is the earliest of the window has value 0, the
    same as an empty pixel.
    """
    x, y, t, on = _unpack(events, width, height)
    tn = _normalised_time(t)
    out = np.zeros((2, height, width), np.float64)
    out[0], _ = _latest(x, y, tn, on, height, width)
    out[1], _ = _latest(x, y, tn, ~on, height, width)
    return out.astype(np.float32)


def sorted_time_surface(events, width, height, *, use_image=True):
    """Sorted time surface (Alzugaray & Chli, 2018): the rank of each pixel's latest timestamp.

    Formula, per polarity ``P``: let ``L[y, x]`` be the latest timestamp of a ``P`` event at
    ``(x, y)`` (pixels without one are inactive), and ``v_0 < v_1 < ... < v_{K-1}`` the *distinct*
    values of ``L`` over the active pixels. An active pixel with ``L[y, x] = v_r`` gets
    ``r / (K - 1)`` (0 when ``K = 1``); inactive pixels get 0. Unitless, in [0, 1], ordered like
    the timestamps (equal latest timestamps share a value; the oldest active pixel gets 0, the
    most recent 1). With ``use_image`` each polarity's surface is preceded by its binary event
    image, which tells the oldest active pixels from inactive ones.

    Output: float32 ``(4, height, width)`` ``[ON binary image, ON sorted, OFF binary image,
    OFF sorted]`` (the N-ImageNet default ``use_image=True``), or ``(2, height, width)``
    ``[ON sorted, OFF sorted]`` with ``use_image=False``.

    N-ImageNet: ``reshape_then_acc_sort`` in ``real_cnn_model/data/imagenet.py`` with
    ``neglect_polarity=False`` and no denoising / quantisation. Timestamps are first replaced by
    their dense rank over the whole window (``global_time``: ``unique_consecutive`` of
    ``int(t_seconds * 1e6)``). The ``strict=True`` branch then keeps each pixel's latest event
    (``scatter_max``), dense-ranks those events' times again, adds one and min-max normalises the
    ranks to [0, 1] (all equal -> 0): that is the formula above, which we implement. Quirks not
    copied:

    * with the loader's default ``strict=False`` the branch computes the min-max normalised ranks
      of the non-zero pixels into a local variable and then discards it, so the output is the raw
      global integer rank of each pixel's latest event (unbounded; an empty pixel and a pixel
      whose latest event has the window's first timestamp are both 0). We implement the
      normalised ("strict") surface;
    * an empty polarity is replaced by one fake event at pixel (0, 0), so its binary image has a
      spurious 1 at (0, 0); we leave it all zero (an empty *input* crashes there; we return zeros);
    * ``global_time=False`` computes per-polarity ranks and never uses them (raw microseconds are
      ranked instead); rank order equals time order either way, so the result is the same;
    * ranks come from ``unique_consecutive``, i.e. assume time-sorted input, and timestamps go
      through float seconds and back (``int(t / 1e6 * 1e6)`` can truncate to the neighbouring
      microsecond); we rank the integer timestamps by value, so the order of the input is
      irrelevant.
    """
    x, y, t, on = _unpack(events, width, height)
    planes = []
    for select in (on, ~on):
        latest = np.full((height, width), -1, np.int64)
        active = np.zeros((height, width), bool)
        for xi, yi, ti, s in zip(x, y, t, select, strict=True):
            if s and (not active[yi, xi] or ti > latest[yi, xi]):
                latest[yi, xi] = ti
                active[yi, xi] = True
        distinct = sorted(set(latest[active].tolist()))
        rank_of = {v: r for r, v in enumerate(distinct)}
        sort = np.zeros((height, width), np.float64)
        if len(distinct) > 1:
            for yi in range(height):
                for xi in range(width):
                    if active[yi, xi]:
                        sort[yi, xi] = rank_of[int(latest[yi, xi])] / (len(distinct) - 1)
        if use_image:
            planes.append(active.astype(np.float64))
        planes.append(sort)
    return np.stack(planes).astype(np.float32)


def dist(
    events,
    width,
    height,
    *,
    alpha=DIST_ALPHA,
    patch_size=DIST_PATCH_SIZE,
    clip_rate=DIST_CLIP_RATE,
):
    """DiST, the discounted sorted timestamp image (Kim et al., N-ImageNet, ICCV 2021).

    Per polarity ``P`` (all times are normalised times ``t_n`` of the module docstring, over all
    events of both polarities):

    1. ``N[y, x]`` = number of ``P`` events at the pixel, clipped at level ``c``: with
       ``n_0 < n_1 < ...`` the distinct values of ``N`` over *all* pixels (including 0) and
       ``S_j`` the number of pixels with ``N <= n_j``, ``c = #{j : S_j < clip_rate * H * W}``
       (literally N-ImageNet's rule: a count of levels, which equals the ``clip_rate`` quantile of
       ``N`` when the levels are 0, 1, 2, ... without gaps), raised to at least 1.
    2. ``L`` = latest ``t_n`` per pixel (0 where empty), ``E`` = earliest ``t_n`` (1 where empty).
    3. Over the ``patch_size x patch_size`` neighbourhood ``W(y, x)`` (clipped at the sensor
       edge): ``M = sum of clipped N``, discount ``D = (max L - min E) / M``: the time span of the
       neighbourhood's events per event.
    4. ``V = max(0, L - alpha * D)`` at pixels with events, 0 elsewhere; ``V = 0`` where
       ``M == 1`` (an event alone in its neighbourhood is treated as noise).
    5. ``V`` is replaced by its dense rank over all ``H * W`` pixels divided by the number of
       distinct values: ``u_0 < ... < u_{K-1}`` the distinct values of ``V``, a pixel with
       ``V = u_r`` gets ``r / K``. Values are in [0, 1) (the maximum is ``(K - 1) / K``); empty,
       isolated and fully discounted pixels get 0.

    Output: float32 ``(2, height, width)``, channels ``[ON, OFF]``.

    N-ImageNet: ``reshape_then_acc_adj_sort`` in ``real_cnn_model/data/imagenet.py``, constants
    ``DISC_ALPHA = 3.0``, ``CLIP_COUNT_RATE = 0.99`` and ``patch_size = 5``; neighbourhood sums
    and extrema via ``avg_pool2d`` (zero padding, times 25) and ``max_pool2d``; ranks via
    ``torch.sort`` + ``unique_consecutive`` + ``repeat_interleave``. Quirks not copied:

    * when at least ``clip_rate`` of the pixels have no event of a polarity (sparse windows, a
      single event on a large sensor), its clip level is 0, every count becomes 0, the discount
      is never applied (and is inf/NaN from a division by zero) and the output ranks the raw
      latest times; we raise the clip level to at least 1 so the discount always applies;
    * the neighbourhood count ``25 * avg_pool2d(...)`` is a float compared with ``== 1.0``; we sum
      integer counts exactly;
    * it works in float32 (ties in the ranking are decided on float32 values); we work in float64;
    * first/last events in array order as the time range (see ``event_image``); a single event
      or equal timestamps give NaN, an empty input crashes. We use min/max, ``t_n = 1`` and zeros.

    ``patch_size`` must be odd (the pooling window is centred on the pixel).
    """
    check_patch_size(patch_size)
    x, y, t, on = _unpack(events, width, height)
    tn = _normalised_time(t)
    out = np.zeros((2, height, width), np.float64)
    for c, select in ((0, on), (1, ~on)):
        out[c] = _dist_plane(x, y, tn, select, height, width, alpha, patch_size, clip_rate)
    return out.astype(np.float32)


def _dist_plane(x, y, tn, select, height, width, alpha, patch_size, clip_rate):
    count = _count(x, y, select, height, width)
    if count.max() == 0:
        return np.zeros((height, width), np.float64)
    latest, _ = _latest(x, y, tn, select, height, width)
    earliest = np.ones((height, width), np.float64)  # 1.0 where there is no event
    for xi, yi, v, s in zip(x, y, tn, select, strict=True):
        if s and v < earliest[yi, xi]:
            earliest[yi, xi] = v

    # 1. Clip the counts.
    _, pixels_per_level = np.unique(count, return_counts=True)
    cumulative = np.cumsum(pixels_per_level)
    clip_level = max(1, int(np.count_nonzero(cumulative < clip_rate * height * width)))
    clipped = np.minimum(count, clip_level)

    # 3., 4. Discount every pixel with events by its neighbourhood's time span per event.
    r = patch_size // 2
    value = np.zeros((height, width), np.float64)
    for yi in range(height):
        for xi in range(width):
            if count[yi, xi] == 0:
                continue
            window = (slice(max(0, yi - r), yi + r + 1), slice(max(0, xi - r), xi + r + 1))
            neighbours = int(clipped[window].sum())
            if neighbours == 1:
                continue  # isolated event: stays 0
            discount = (latest[window].max() - earliest[window].min()) / neighbours
            value[yi, xi] = max(0.0, latest[yi, xi] - alpha * discount)

    # 5. Dense rank over all pixels, divided by the number of distinct values.
    distinct = sorted(set(value.ravel().tolist()))
    rank_of = {v: r for r, v in enumerate(distinct)}
    ranked = np.zeros((height, width), np.float64)
    for yi in range(height):
        for xi in range(width):
            ranked[yi, xi] = rank_of[value[yi, xi]] / len(distinct)
    return ranked


# --------------------------------------------------------------------------------------------
# EST voxel grid and the exponential time surface


def voxel_grid(events, width, height, *, num_bins=9, measurement="count"):
    """EST voxel grid (Gehrig et al., ICCV 2019) with its fixed trilinear kernel: bilinear in time.

    Each event ``i`` is spread over ``num_bins = B`` temporal bins centred at ``t_n = k / (B - 1)``,
    ``k = 0 .. B-1`` (the first and last bins are centred on the first and last events):

        ``G[g(p_i) * B + k, y_i, x_i] += f_i * max(0, 1 - |t_n,i * (B - 1) - k|)``

    so an event's weight is split linearly between the two bins around it, and the weights of one
    event sum to exactly 1 (an event at a bin centre, or ``B = 1``, puts all of it in one bin).
    ``t_n`` is the normalised time of the module docstring; ``g(OFF) = 0``, ``g(ON) = 1``.
    The measurement ``f_i`` (EST's Sec. 3.1) is

    * ``"count"`` (default): ``f = 1``. Each channel group then holds its polarity's events, and the
      grid's total mass equals the number of events (per group: per polarity).
    * ``"polarity"``: ``f = +1`` for ON, ``-1`` for OFF (the OFF group's mass is minus its count).
    * ``"timestamp"``: ``f = t_n``, EST's own choice (``values = t * value_layer(t - k / (C - 1))``).

    Output: float32 ``(2 * num_bins, height, width)``, channels
    ``[OFF bin 0, ..., OFF bin B-1, ON bin 0, ..., ON bin B-1]`` (EST's order: its polarity index is
    ``(p + 1) / 2`` for ``p`` in {-1, 1}, and the grid is ``cat([vox[:, 0], vox[:, 1]])``).

    EST: ``QuantizationLayer.forward`` in ``utils/models.py`` of
    uzh-rpg/rpg_event_representation_learning. Quirks not copied:

    * its kernel is a learned MLP (``ValueLayer``), only *initialised* to approximate the
      trilinear kernel; we use the exact kernel (the "voxel grid" of the paper's Table 1);
    * the kernel's fitting target ``ValueLayer.trilinear_kernel`` is 0 at exactly ``t - k/(C-1)
      = 0`` (only its ``> 0`` and ``< 0`` branches are filled); we use 1 there;
    * timestamps are normalised as ``t / t_max`` per sample, which assumes each sample's times
      start near 0 (absolute microsecond timestamps would all land near 1); we use
      ``(t - t_min) / (t_max - t_min)``;
    * that normalisation is done in place on a view of the caller's event tensor (the input is
      modified) and divides by zero when ``t_max = 0``; we copy and use ``t_n = 1`` for equal
      timestamps;
    * ``i_bin / (C - 1)`` divides by zero for one bin; ``num_bins = 1`` is allowed here.
    """
    check_voxel_params(num_bins, measurement)
    x, y, t, on = _unpack(events, width, height)
    tn = _normalised_time(t)
    out = np.zeros((2 * num_bins, height, width), np.float64)
    for xi, yi, ti, oi in zip(x, y, tn, on, strict=True):
        if measurement == "count":
            f = 1.0
        elif measurement == "polarity":
            f = 1.0 if oi else -1.0
        else:
            f = ti
        position = ti * (num_bins - 1)
        group = num_bins if oi else 0
        for k in range(num_bins):
            weight = max(0.0, 1.0 - abs(position - k))
            if weight > 0.0:
                out[group + k, yi, xi] += f * weight
    return out.astype(np.float32)


def time_surface_params(t: np.ndarray, tau_us, t_ref) -> tuple[int, float]:
    """``(t_ref, tau)`` for :func:`time_surface` from its arguments and the timestamps ``t``."""
    t_ref = int(t.max()) if t_ref is None else int(t_ref)
    tau = check_tau(tau_us)
    return t_ref, EXP_TAU * float(t.max() - t.min()) if tau is None else tau


def time_surface(events, width, height, *, tau_us=None, t_ref=None):
    """Exponential time surface (HOTS / HATS): exponentially decayed age of the latest event.

    Formula, per polarity: ``S[c, y, x] = exp(-(t_ref - t_last[c, y, x]) / tau)`` where ``t_last``
    is the timestamp (microseconds) of the latest event of polarity ``P(c)`` at ``(x, y)`` with
    ``t <= t_ref``; pixels without such an event get 0. Events after ``t_ref`` are ignored (the
    surface at ``t_ref`` only sees the past). Values are in [0, 1]; 1 means an event at ``t_ref``.

    * ``t_ref`` (int, microseconds): default the latest timestamp of the input.
    * ``tau_us`` (float, microseconds, > 0): default ``EXP_TAU * (t_max - t_min) = 0.3 x`` the
      window's duration, N-ImageNet's choice. A zero default tau (all timestamps equal) gives 1 for
      events at ``t_ref`` and 0 for older ones.

    Output: float32 ``(2, height, width)``, channels ``[ON, OFF]``.

    N-ImageNet: ``reshape_then_acc_exp`` in ``real_cnn_model/data/imagenet.py``:
    ``exp(-(1 - T) / EXP_TAU)`` with ``T`` the timestamp image (``scatter_max`` of the normalised
    time), identical to the formula above with the defaults. Quirks not copied:

    * empty pixels have ``T = 0`` and so get ``exp(-1 / 0.3) ~ 0.036`` instead of 0 (they are
      indistinguishable from a pixel whose latest event opened the window); we give 0, as HOTS
      does for pixels that never fired;
    * first/last events in array order as the time range; NaN for a single event or equal
      timestamps; crash on empty input. We use min/max, 1 at ``t_ref``, and zeros.
    """
    x, y, t, on = _unpack(events, width, height)
    out = np.zeros((2, height, width), np.float64)
    if len(t) == 0:
        return out.astype(np.float32)
    t_ref, tau = time_surface_params(t, tau_us, t_ref)
    for c, select in ((0, on), (1, ~on)):
        t_last = np.zeros((height, width), np.int64)
        seen = np.zeros((height, width), bool)
        for xi, yi, ti, s in zip(x, y, t, select, strict=True):
            if s and ti <= t_ref and (not seen[yi, xi] or ti > t_last[yi, xi]):
                t_last[yi, xi] = ti
                seen[yi, xi] = True
        for yi in range(height):
            for xi in range(width):
                if not seen[yi, xi]:
                    continue
                age = t_ref - int(t_last[yi, xi])
                if age == 0:
                    out[c, yi, xi] = 1.0
                elif tau > 0.0:
                    out[c, yi, xi] = math.exp(-age / tau)
    return out.astype(np.float32)
