"""Multiblock partial least squares (MB-PLS) by NIPALS, in torch, on CPU or CUDA tensors.

EDRL-MEA aligns its C+1 embedding blocks with the utterance's input representation through it and trains its classifier
on the super scores.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ser_fast.models.checks import check_bools, is_int

logger = logging.getLogger(__name__)

_FORMAT = "ser_fast.MBPLS"
_FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_METHODS = ("nipals", "svd")
# The constructor's arguments as config() saves them (dtype aside).
_SETTINGS = ("n_components", "standardize", "block_weighting", "method", "max_iter", "tol")
_CONFIG_KEYS = frozenset({"format", "version", *_SETTINGS, "dtype", "block_widths", "n_targets"})
_PER_BLOCK = ("block_weights", "block_loadings")
_SHARED = (
    "x_mean", "x_scale", "y_mean", "y_scale", "super_weights", "block_importances", "block_importances_corrected",
    "y_loadings", "x_rotations", "coefficients", "explained_variance_x", "explained_variance_blocks",
    "explained_variance_y", "n_iter",
)
# A covariance |X_k^T u| this many round-offs of |X|_F is indistinguishable from zero: no component is left.
_NO_COVARIANCE_ULPS = 1e3
# NIPALS cannot settle below round-off: the unit super score moves by ~eps * sqrt(N) between
# iterations once converged, so the requested tol is floored there (float32 would never reach 1e-10).
_CONVERGENCE_FLOOR_ULPS = 16.0


class MBPLS:
    """Multiblock PLS regression of Y on X blocks X_1..X_B by NIPALS, with deflation by the super scores.

    The algorithm is the MB-PLS of Westerhuis, Kourti & MacGregor, "Analysis of multiblock and hierarchical PCA and PLS
    models", J. Chemometrics 12:301-321 (1998), after Wold et al. and Wangen & Kowalski (1988). Per component k, on the
    deflated blocks X_b and Y, starting from u = a column of Y and repeating until the super score stops moving:

    - block weights ``w_b = X_b^T u / |X_b^T u|``; block scores ``t_b = X_b w_b`` (no 1/sqrt(p_b) division: Westerhuis
      et al. drop Wangen & Kowalski's, as the ``mbpls`` package does);
    - super weights ``a = T^T u / |T^T u|`` with ``T = [t_1..t_B]``; super score ``t = T a / |T a|``;
    - Y loadings ``v = Y^T t``; ``u = Y v / |Y v|``.

    Then block loadings ``p_b = X_b^T t``, and ``X_b -= t p_b^T``, ``Y -= t v^T``. Westerhuis et al. show this gives the
    super scores of PLS2 on the concatenated ``[X_1 .. X_B]``; the block scores and super weights add each block's view
    and share (``block_importances = a**2``, summing to 1).

    Conventions follow the ``mbpls`` package (Baum & Vermue, ``mbpls.mbpls.MBPLS(method="NIPALS")``), which the tests
    compare against. Super scores have unit norm, so loadings carry the scale. Signs are NIPALS's own: u starts from Y's
    first column (from the column with the most covariance with X if that one has none), so each component's sign
    matches ``mbpls``'s. Deflating Y, which ``mbpls`` skips, changes none of the attributes below: the deflated
    directions are orthogonal to the later super scores. Y scores (``mbpls``'s ``U_``) are not kept.

    Attributes after fit (K components, B blocks of widths p_b summing to p, q Y columns; ``mbpls`` name in brackets),
    all in the standardised space:

    - ``super_scores`` [N, K] (``Ts_``) and ``block_scores``, B x [N, K] (``T_``): training data only.
    - ``block_weights``, B x [p_b, K] (``W_``); ``block_loadings``, B x [p_b, K] (``P_``).
    - ``super_weights`` [B, K]: a; ``block_importances`` [B, K] = a**2 (``A_``); ``block_importances_corrected`` [B, K]
      (``A_corrected_``: a**2 (1 - p_b / p), renormalised).
    - ``y_loadings`` [q, K] (``V_``); ``x_rotations`` [p, K] = W (P^T W)^-1 (``R_``); ``coefficients`` [p, q] = R V^T
      (``beta_``).
    - ``explained_variance_x`` [K], ``explained_variance_blocks`` [B, K], ``explained_variance_y`` [K]
      (``explained_var_x_``, ``explained_var_xblocks_``, ``explained_var_y_``): each component's share of the
      standardised data's total sum of squares.
    - ``x_mean``, ``x_scale`` [p] and ``y_mean``, ``y_scale`` [q]: the column standardisation (``x_scale`` includes the
      block weighting); ``n_iter`` [K]: NIPALS iterations (0 with "svd").

    Args:
        n_components: latent components, 1..min(N - 1, sum of block widths) at fit: centring leaves X rank at most N - 1
            and each component removes one dimension of it.
        standardize: centre every X and Y column and divide it by its standard deviation (ddof=0, a constant column
            keeps scale 1), as ``mbpls``'s StandardScaler does. False uses the data as given, uncentred and with no
            intercept, as ``mbpls`` does: centre it yourself.
        block_weighting: also divide each X block by sqrt(its width) so that every block carries the same total variance
            whatever its width. ``mbpls`` has no such scaling, hence the default False; it matters only when block
            widths differ.
        method: ``"nipals"``, the iteration above (default), or ``"svd"``, its fixed point computed directly: the
            concatenated weight ``[a_1 w_1 .. a_B w_B]`` that NIPALS converges to is the top left singular vector of
            ``X_k^T Y_k`` (NIPALS is the power method on ``X_k^T Y_k Y_k^T X_k``), signed as NIPALS's start leaves it.
            Same model to round-off where NIPALS converges; exact, and much faster with many Y columns, where NIPALS can
            need hundreds of iterations per component.
        max_iter: NIPALS iterations per component at most; not converging logs a warning.
        tol: convergence when the unit super score moves by at most this (2-norm) between iterations, floored at the
            dtype's round-off (``16 * eps * sqrt(N)``).
        dtype: the arithmetic dtype, torch.float64 (recommended: deflation accumulates round-off over components) or
            torch.float32. Inputs of other dtypes are converted.

    Fitted tensors live on the device of the training data (move them with :meth:`to`); inputs to :meth:`transform` and
    :meth:`predict` must be on that device. Fitting does not track gradients; transform and predict are linear maps of
    their inputs and pass gradients to them.
    """

    def __init__(self, n_components: int, *, standardize: bool = True, block_weighting: bool = False,
                 method: str = "nipals", max_iter: int = 500, tol: float = 1e-10,
                 dtype: torch.dtype = torch.float64) -> None:
        if not is_int(n_components) or n_components < 1:
            raise ValueError(f"n_components must be an int >= 1, got {n_components!r}")
        check_bools(standardize=standardize, block_weighting=block_weighting)
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if not is_int(max_iter) or max_iter < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol <= 0:
            raise ValueError(f"tol must be a finite float > 0, got {tol!r}")
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.n_components = int(n_components)
        self.standardize = standardize
        self.block_weighting = block_weighting
        self.method = method
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.dtype = dtype
        # The fitted state (listed in the class docstring): None until fit() or from_tensors().
        for name in ("block_widths", "n_targets", *_SHARED, *_PER_BLOCK, "super_scores", "block_scores"):
            setattr(self, name, None)

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_tensors`) has set the model's tensors."""
        return self.x_rotations is not None

    @property
    def n_blocks(self) -> int:
        """Number of X blocks the model was fitted with."""
        self._require_fitted("n_blocks")
        return len(self.block_widths)

    @property
    def device(self) -> torch.device:
        """Device of the fitted tensors."""
        self._require_fitted("device")
        return self.x_rotations.device

    def fit(self, x_blocks: Sequence[torch.Tensor], y: torch.Tensor) -> MBPLS:
        """Fit on X blocks ``[N, p_b]`` and responses ``y`` ``[N, q]`` (or ``[N]``), setting the class docstring's
        attributes; returns self. Raises ValueError when X and Y have no covariance left before ``n_components``
        components."""
        blocks, widths = self._check_blocks(x_blocks, "x_blocks")
        n = blocks[0].shape[0]
        targets = self._check_y(y, n, blocks[0].device)
        limit = min(n - 1, sum(widths))
        if self.n_components > limit:
            raise ValueError(f"n_components={self.n_components} exceeds min(N - 1, sum of block widths) = "
                             f"min({n - 1}, {sum(widths)}) = {limit}: centred X has at most that many independent "
                             "directions")
        # Unfitted until the last tensor is set, so a fit that raises leaves no half-updated model behind.
        self.x_rotations = None
        with torch.no_grad():
            x = torch.cat(blocks, dim=1)
            self.x_mean, self.x_scale = self._column_scaling(x, widths)
            self.y_mean, self.y_scale = self._column_scaling(targets, None)
            x = (x - self.x_mean) / self.x_scale
            targets = (targets - self.y_mean) / self.y_scale
            self.block_widths = widths
            self.n_targets = targets.shape[1]
            self._fit_standardized(list(torch.split(x, widths, dim=1)), targets)
        return self

    def fit_transform(self, x_blocks: Sequence[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """Fit, then return the training super scores ``[N, n_components]``."""
        return self.fit(x_blocks, y).super_scores

    def transform(
        self, x_blocks: Sequence[torch.Tensor], *, return_block_scores: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Super scores ``[N, n_components]`` of new X blocks: ``X R`` with ``R = W (P^T W)^-1``. With
        ``return_block_scores``, also the block scores (one ``[N, n_components]`` per block), found as ``mbpls`` does:
        component k's block weights applied to the block deflated by the earlier super scores and block loadings.
        """
        x = self._standardized_input(x_blocks)
        scores = x @ self.x_rotations
        if not return_block_scores:
            return scores
        block_scores = []
        for block, weights, loadings in zip(
            torch.split(x, self.block_widths, dim=1), self.block_weights, self.block_loadings
        ):
            columns = []
            for k in range(self.n_components):
                if k > 0:
                    block = block - torch.outer(scores[:, k - 1], loadings[:, k - 1])
                columns.append(block @ weights[:, k])
            block_scores.append(torch.stack(columns, dim=1))
        return scores, block_scores

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Super scores ``X R`` of the blocks already concatenated, ``x [N, sum p_b]``, without the checks of
        :meth:`transform` (which read values): for graphs that ``torch.compile`` or the ONNX exporter trace. Computed at
        the model's dtype."""
        return ((x.to(self.x_mean.dtype) - self.x_mean) / self.x_scale) @ self.x_rotations

    def predict(self, x_blocks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Predicted responses ``[N, q]`` (2-D even when Y was 1-D at fit), in Y's original units."""
        x = self._standardized_input(x_blocks)
        return (x @ self.coefficients) * self.y_scale + self.y_mean

    def to(self, device: torch.device | str) -> MBPLS:
        """Move every fitted tensor to ``device``; returns self."""
        self._require_fitted("to")
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
            elif isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                setattr(self, name, [t.to(device) for t in value])
        return self

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted tensors by name (per-block ones as ``block_weights.<b>``), ready for safetensors; not the training
        scores, which grow with N (:meth:`transform` recomputes them)."""
        self._require_fitted("to_tensors")
        tensors = {name: getattr(self, name).contiguous() for name in _SHARED}
        for name in _PER_BLOCK:
            for b, tensor in enumerate(getattr(self, name)):
                tensors[f"{name}.{b}"] = tensor.contiguous()
        return tensors

    def config(self) -> dict[str, Any]:
        """JSON-ready settings and shapes; with :meth:`to_tensors`, all :meth:`from_tensors` needs."""
        self._require_fitted("config")
        return {"format": _FORMAT, "version": _FORMAT_VERSION, **{name: getattr(self, name) for name in _SETTINGS},
                "dtype": str(self.dtype).removeprefix("torch."), "block_widths": list(self.block_widths),
                "n_targets": self.n_targets}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> MBPLS:
        """Rebuild a fitted model from :meth:`to_tensors` and :meth:`config` output (e.g. after safetensors)."""
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping of names to tensors, got {type(tensors).__name__}")
        if not isinstance(config, Mapping) or config.get("format") != _FORMAT:
            raise ValueError(f"config is not an {_FORMAT} config (its 'format' must be {_FORMAT!r})")
        missing_keys = sorted(_CONFIG_KEYS - set(config))
        if missing_keys:
            raise ValueError(f"config lacks {missing_keys}: pass what MBPLS.config() returned")
        if config.get("version") != _FORMAT_VERSION:
            raise ValueError(f"config version {config.get('version')!r} is not the supported {_FORMAT_VERSION}")
        if config.get("dtype") not in _DTYPES:
            raise ValueError(f"config dtype must be one of {sorted(_DTYPES)}, got {config.get('dtype')!r}")
        widths, q = config.get("block_widths"), config.get("n_targets")
        if (not isinstance(widths, list) or not widths or not all(is_int(w) and w >= 1 for w in widths)
                or not is_int(q) or q < 1):
            raise ValueError(f"config needs block_widths (positive ints) and n_targets (>= 1), got {widths!r}, {q!r}")
        model = cls(**{name: config[name] for name in _SETTINGS}, dtype=_DTYPES[config["dtype"]])
        k, b, p = model.n_components, len(widths), sum(widths)
        expected = {
            "x_mean": (p,), "x_scale": (p,), "y_mean": (q,), "y_scale": (q,), "super_weights": (b, k),
            "block_importances": (b, k), "block_importances_corrected": (b, k), "y_loadings": (q, k),
            "x_rotations": (p, k), "coefficients": (p, q), "explained_variance_x": (k,),
            "explained_variance_blocks": (b, k), "explained_variance_y": (k,), "n_iter": (k,),
        }
        for name in _PER_BLOCK:
            expected.update({f"{name}.{i}": (w, k) for i, w in enumerate(widths)})
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"tensors do not match the config: missing {missing}, unexpected {unexpected}")
        for name, shape in expected.items():
            if not isinstance(tensors[name], torch.Tensor) or tuple(tensors[name].shape) != shape:
                got = tuple(tensors[name].shape) if isinstance(tensors[name], torch.Tensor) else type(tensors[name])
                raise ValueError(f"tensor {name!r} must have shape {shape}, got {got}")
        devices = {t.device for t in tensors.values()}
        if len(devices) != 1:
            raise ValueError(f"tensors must all be on one device, got {sorted(map(str, devices))}")

        def load(name: str) -> torch.Tensor:
            return tensors[name].to(torch.int64 if name == "n_iter" else model.dtype).clone()

        for name in _SHARED:
            setattr(model, name, load(name))
        for name in _PER_BLOCK:
            setattr(model, name, [load(f"{name}.{i}") for i in range(b)])
        model.block_widths = [int(w) for w in widths]
        model.n_targets = int(q)
        return model

    def __repr__(self) -> str:
        fitted = f", block_widths={self.block_widths}, n_targets={self.n_targets}" if self.is_fitted else ""
        return (f"MBPLS(n_components={self.n_components}, standardize={self.standardize}, "
                f"block_weighting={self.block_weighting}, method={self.method!r}, dtype={self.dtype}{fitted})")

    def _fit_standardized(self, blocks: list[torch.Tensor], targets: torch.Tensor) -> None:
        widths = self.block_widths
        eps = torch.finfo(self.dtype).eps
        n = targets.shape[0]
        tol = max(self.tol, _CONVERGENCE_FLOOR_ULPS * eps * math.sqrt(n))
        block_sums = torch.stack([(block**2).sum() for block in blocks])
        x_sum = block_sums.sum()
        y_sum = (targets**2).sum()
        no_covariance = _NO_COVARIANCE_ULPS * eps * float(x_sum.sqrt())
        components = []
        cross = torch.cat([block.T @ targets for block in blocks], dim=0)
        for k in range(self.n_components):
            start = self._start_column(cross, targets, no_covariance, k)
            if self.method == "nipals":
                w, t_blocks, a, t, v, iterations = self._nipals_component(blocks, targets, targets[:, start], tol, k)
            else:
                w, t_blocks, a, t, v = self._svd_component(blocks, targets, cross, start)
                iterations = 0
            p = [block.T @ t for block in blocks]
            blocks = [block - torch.outer(t, p_b) for block, p_b in zip(blocks, p)]
            targets = targets - torch.outer(t, v)
            # X_{k+1}^T Y_{k+1} = X_k^T Y_k - p v^T (as X_k^T t = p, Y_k^T t = v, |t| = 1): no N-sized product.
            cross = cross - torch.outer(torch.cat(p), v)
            components.append((w, p, t_blocks, a, t, v, iterations))

        w, p, t_blocks, a, t, v, n_iter = zip(*components)
        self.block_weights = [torch.stack(columns, dim=1) for columns in zip(*w)]
        self.block_loadings = [torch.stack(columns, dim=1) for columns in zip(*p)]
        self.block_scores = [torch.stack(columns, dim=1) for columns in zip(*(s.unbind(dim=1) for s in t_blocks))]
        self.super_weights, self.super_scores, self.y_loadings = (torch.stack(c, dim=1) for c in (a, t, v))
        self.n_iter = torch.tensor(n_iter, dtype=torch.int64, device=targets.device)
        self.block_importances = self.super_weights**2
        self.block_importances_corrected = _corrected_importances(self.block_importances, widths)

        # Concatenated PLS weights: block b's share of X^T u is its super weight times its unit block weight.
        concatenated_weights = torch.cat([a_b * w_b for a_b, w_b in zip(self.super_weights, self.block_weights)], dim=0)
        all_loadings = torch.cat(self.block_loadings, dim=0)
        # R = W (P^T W)^-1, so that X R reproduces the super scores on the undeflated (standardised) X.
        rotations = torch.linalg.solve(all_loadings.T @ concatenated_weights, concatenated_weights, left=False)
        self.coefficients = rotations @ self.y_loadings.T
        loading_sums = torch.stack([(p_b**2).sum(dim=0) for p_b in self.block_loadings])
        tiny = torch.finfo(self.dtype).tiny
        self.explained_variance_blocks = torch.where(block_sums[:, None] > 0,
                                                     loading_sums / block_sums.clamp_min(tiny)[:, None], 0.0)
        self.explained_variance_x = loading_sums.sum(dim=0) / x_sum
        self.explained_variance_y = (self.y_loadings**2).sum(dim=0) / y_sum.clamp_min(tiny)
        self.x_rotations = rotations

    def _nipals_component(
        self, blocks: list[torch.Tensor], targets: torch.Tensor, u: torch.Tensor, tol: float, k: int
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """One component's NIPALS loop from Y score ``u``: block weights, block scores, super weights, super score, Y
        loadings and the iterations used."""
        tiny = torch.finfo(self.dtype).tiny
        previous, moved = None, None
        for iteration in range(1, self.max_iter + 1):
            # A block with no covariance with u (all of it deflated away, or constant) gets zero weights.
            w = [block.T @ u for block in blocks]
            w = [w_b / w_b.norm().clamp_min(tiny) for w_b in w]
            t_blocks = torch.stack([block @ w_b for block, w_b in zip(blocks, w)], dim=1)
            a = t_blocks.T @ u
            a = a / a.norm()
            t = t_blocks @ a
            t = t / t.norm()
            v = targets.T @ t
            u = targets @ v
            u = u / u.norm()
            if previous is not None:
                moved = float((t - previous).norm())
                if moved <= tol:
                    return w, t_blocks, a, t, v, iteration
            previous = t
        logger.warning("MB-PLS component %d did not converge in %d NIPALS iterations (super score still moved %s, "
                       "tol %.3g)", k + 1, self.max_iter, "?" if moved is None else f"{moved:.3g}", tol)
        return w, t_blocks, a, t, v, self.max_iter

    def _svd_component(
        self, blocks: list[torch.Tensor], targets: torch.Tensor, cross: torch.Tensor, start: int
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """NIPALS's fixed point in one step (``method="svd"`` in the class docstring), signed as the power method
        started from ``X^T y_start`` leaves it."""
        # The top eigenvector of the smaller Gram matrix: a full SVD of the tall X^T Y costs far more.
        if cross.shape[0] <= cross.shape[1]:
            left = torch.linalg.eigh(cross @ cross.T).eigenvectors[:, -1]
        else:
            left = cross @ torch.linalg.eigh(cross.T @ cross).eigenvectors[:, -1]
            left = left / left.norm()
        if float(left @ cross[:, start]) < 0:
            left = -left
        pieces = torch.split(left, self.block_widths)
        a = torch.stack([piece.norm() for piece in pieces])
        w = [piece / norm.clamp_min(torch.finfo(self.dtype).tiny) for piece, norm in zip(pieces, a)]
        t_blocks = torch.stack([block @ w_b for block, w_b in zip(blocks, w)], dim=1)
        t = t_blocks @ a
        t = t / t.norm()
        return w, t_blocks, a, t, targets.T @ t

    def _start_column(self, cross: torch.Tensor, targets: torch.Tensor, no_covariance: float, k: int) -> int:
        """Y's first column, unless X has no covariance with it; then the column with the most."""
        covariance = cross.norm(dim=0)
        column_norms = targets.norm(dim=0)
        per_unit = torch.where(column_norms > 0, covariance / column_norms.clamp_min(torch.finfo(self.dtype).tiny), 0.0)
        if float(per_unit[0]) > no_covariance:
            return 0
        best = int(per_unit.argmax())
        if float(per_unit[best]) <= no_covariance:
            hint = " (Y is constant or X has no column varying with it)" if k == 0 else ""
            raise ValueError(f"X and Y have no covariance left after {k} component(s) (X^T Y is zero to round-off), "
                             f"so component {k + 1} does not exist: use n_components <= {k}{hint}")
        return best

    def _column_scaling(self, data: torch.Tensor, widths: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Column means and divisors: StandardScaler's (ddof=0, constant columns keep 1), times sqrt(p_b)."""
        n, columns = data.shape
        if self.standardize:
            mean = data.mean(dim=0)
            variance = data.var(dim=0, correction=0)
            eps = torch.finfo(self.dtype).eps
            # sklearn's test for a constant column: a variance within accumulated round-off of zero.
            constant = variance <= n * eps * variance + (n * mean * eps) ** 2
            scale = torch.where(constant, torch.ones_like(variance), variance.sqrt())
        else:
            mean = data.new_zeros(columns)
            scale = data.new_ones(columns)
        if widths is not None and self.block_weighting:
            scale = scale * torch.cat([data.new_full((w,), math.sqrt(w)) for w in widths])
        return mean, scale

    def _standardized_input(self, x_blocks: Sequence[torch.Tensor]) -> torch.Tensor:
        self._require_fitted("transform/predict")
        blocks, widths = self._check_blocks(x_blocks, "x_blocks", min_rows=1)
        if len(widths) != self.n_blocks:
            raise ValueError(f"x_blocks has {len(widths)} blocks, the model was fitted with {self.n_blocks} "
                             f"(widths {self.block_widths})")
        for b, (width, expected) in enumerate(zip(widths, self.block_widths)):
            if width != expected:
                raise ValueError(f"x_blocks[{b}] has {width} columns, the model was fitted with {expected}")
        if blocks[0].device != self.device:
            raise ValueError(f"x_blocks are on {blocks[0].device} but the model is on {self.device}: "
                             f"move one with .to()")
        return (torch.cat(blocks, dim=1) - self.x_mean) / self.x_scale

    def _check_blocks(
        self, x_blocks: Sequence[torch.Tensor], name: str, min_rows: int = 2
    ) -> tuple[list[torch.Tensor], list[int]]:
        if isinstance(x_blocks, torch.Tensor) or not isinstance(x_blocks, Sequence):
            raise TypeError(f"{name} must be a list of 2-D tensors [N, p_b], got {type(x_blocks).__name__}")
        if len(x_blocks) == 0:
            raise ValueError(f"{name} must hold at least one block")
        blocks = []
        for b, block in enumerate(x_blocks):
            blocks.append(self._check_matrix(block, f"{name}[{b}]"))
            if block.shape[0] != x_blocks[0].shape[0]:
                raise ValueError(f"{name}[{b}] has {block.shape[0]} rows but {name}[0] has "
                                 f"{x_blocks[0].shape[0]}: blocks must share N")
            if block.device != x_blocks[0].device:
                raise ValueError(f"{name}[{b}] is on {block.device} but {name}[0] on {x_blocks[0].device}")
        if blocks[0].shape[0] < min_rows:
            raise ValueError(f"{name} must have N >= {min_rows} rows, got {blocks[0].shape[0]}")
        return blocks, [block.shape[1] for block in blocks]

    def _check_y(self, y: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
        if isinstance(y, torch.Tensor) and y.dim() == 1:
            y = y[:, None]
        targets = self._check_matrix(y, "y").detach()
        if targets.shape[0] != n:
            raise ValueError(f"y has {targets.shape[0]} rows but the X blocks have {n}")
        if targets.device != device:
            raise ValueError(f"y is on {targets.device} but the X blocks are on {device}")
        return targets

    def _check_matrix(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 2 or tensor.shape[1] < 1:
            raise ValueError(f"{name} must be 2-D [N, columns >= 1], got shape {tuple(tensor.shape)}")
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers, got {tensor.dtype}")
        tensor = tensor.to(self.dtype)
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} holds NaN or infinite values")
        return tensor

    def _require_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise RuntimeError(f"MBPLS.{what} needs a fitted model: call fit() first (or load with from_tensors)")


def _corrected_importances(importances: torch.Tensor, widths: list[int]) -> torch.Tensor:
    """``mbpls``'s A_corrected_: each block's importance times (1 - p_b / p), renormalised to sum 1."""
    if len(widths) == 1:
        return torch.ones_like(importances)
    total = sum(widths)
    factors = importances.new_tensor([1.0 - w / total for w in widths])
    corrected = importances * factors[:, None]
    return corrected / corrected.sum(dim=0, keepdim=True)
