"""Toxic-subspace projection (DeTox / ProFS): remove a behaviour from a language model without training.

The edit of Uppaal et al. (2025) finds, per layer, a low-rank subspace of the residual stream in
which preferred and dispreferred texts differ, and projects it out of the weights that write
into the residual stream from the MLP, so that the layer can no longer write into it:

1. :func:`mean_hidden_states` — a sentence embedding per layer: the mean of the hidden state after
   block ``ℓ`` over a text's non-padding tokens, ``(L, N, D)``.
2. :func:`preference_matrix` — one row per pair, ``(e(preferred) − e(dispreferred)) / 2``.
3. :func:`top_direction` and :func:`center` — the top right-singular direction of the preferred
   embeddings is what all text shares (stop words, position); it is removed from the matrix.
4. :func:`subspace_basis` — the top-``k`` right singular vectors of the centered matrix span the
   toxic subspace (the authors' default ``k = 2``).
5. :func:`edit_model` — for each layer in a range, ``W_out ← (I − V Vᵀ) W_out`` on the MLP output
   ("down") projection; attention and the MLP input weights stay as they are.

:func:`fit_toxic_subspace` runs steps 2–4 for a range of layers and returns a :class:`ToxicSubspace`;
:func:`random_subspace` is the control of the same rank; :func:`direction_tokens` reports what
each removed direction means as the tokens it maps to through the unembedding (logit lens), as
the authors do. The functions on arrays are pure numpy; the ones that take a model need torch and
one of two kinds of model, and say so clearly otherwise:

- a transformers causal LM of the Llama family (``model.model.layers[i].mlp.down_proj``, e.g.
  SmolLM2) with its tokenizer;
- synthloop's own transformer (:class:`synthloop.nn.model.GPT`: ``model.blocks[i].mlp.down``)
  with a tokenizer whose ``encode(text)`` gives token ids (``CharTokenizer``, or a ``tokenizers``
  ``Tokenizer``). Its hidden states are read with forward hooks on the blocks, so every block's
  embedding (the last one's included) is in residual-stream coordinates.

References
----------
Uppaal, Dey, He, Zhong, Hu. *Model Editing as a Robust and Denoised Variant of DPO: A Case Study
on Toxicity* (ICLR 2025; preprint title *DeTox: Toxic Subspace Projection for Model Editing*),
section 3 (Eqs. 2–5) and Algorithm 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .validation import ConfigError

if TYPE_CHECKING:  # torch is the optional ``llm`` extra
    import torch


@dataclass
class ToxicSubspace:
    """The subspaces removed from a model, one per edited layer.

    Attributes
    ----------
    layers : tuple of int
        Indices of the edited blocks (0-based; block ``ℓ`` writes the hidden state ``ℓ + 1``).
    basis : ndarray of shape (len(layers), D, k)
        Orthonormal columns spanning each layer's subspace.
    singular_values : ndarray of shape (len(layers), k)
        Singular values of the centered preference matrix for those directions (NaN for a
        random control).
    kind : str
        ``"preference"`` (fitted from pairs) or ``"random"`` (the control).
    n_pairs : int
        Pairs the subspace was fitted from (0 for a random control).
    """

    layers: tuple[int, ...]
    basis: np.ndarray
    singular_values: np.ndarray
    kind: str = "preference"
    n_pairs: int = 0

    @property
    def rank(self) -> int:
        return int(self.basis.shape[-1])

    def projector(self, i: int) -> np.ndarray:
        """``P = V Vᵀ`` of the ``i``-th edited layer, (D, D)."""
        V = self.basis[i]  # (D, k)
        return V @ V.T

    def describe(self) -> str:
        span = f"{self.layers[0]}–{self.layers[-1]}" if self.layers else "none"
        source = f"{self.n_pairs} pairs" if self.kind == "preference" else "random control"
        return f"rank {self.rank}, layers {span}, {source}"


def preference_matrix(preferred: np.ndarray, dispreferred: np.ndarray) -> np.ndarray:
    """Rows ``(e(preferred) − e(dispreferred)) / 2``, one per pair.

    Parameters
    ----------
    preferred, dispreferred : ndarray of shape (..., N, D)
        Sentence embeddings of the two texts of each pair (any leading axes, e.g. layers).

    Returns
    -------
    ndarray of shape (..., N, D)

    Notes
    -----
    ``T = (E⁺ − E⁻) / 2`` (Uppaal et al., Eq. 2): with ``e = μ + B f + u`` for a shared mean ``μ``,
    toxic factors ``f`` and noise ``u``, the mean cancels and the rows lie near the span of ``B``.

    Examples
    --------
    >>> preference_matrix(np.array([[2.0, 0.0]]), np.array([[0.0, 2.0]]))
    array([[ 1., -1.]])
    """
    preferred, dispreferred = np.asarray(preferred, float), np.asarray(dispreferred, float)
    if preferred.shape != dispreferred.shape:
        raise ValueError(f"preferred and dispreferred embeddings must have the same shape; got {preferred.shape} and {dispreferred.shape}")
    return (preferred - dispreferred) / 2


def top_direction(embeddings: np.ndarray) -> np.ndarray:
    """The top right-singular vector of ``embeddings`` (not mean-centered), unit norm.

    Parameters
    ----------
    embeddings : ndarray of shape (..., N, D)

    Returns
    -------
    ndarray of shape (..., D)
        Sign chosen so that the rows' mean projection is non-negative.

    Notes
    -----
    The top singular direction of raw sentence embeddings is close to their common mean, the
    content all text shares (Uppaal et al., section 3.2, "centering").

    Examples
    --------
    >>> top_direction(np.array([[3.0, 0.0], [3.0, 0.1], [3.0, -0.1]]))
    array([1., 0.])
    """
    E = np.asarray(embeddings, float)
    _, _, Vt = np.linalg.svd(E, full_matrices=False)
    v = Vt[..., 0, :]  # (..., D)
    sign = np.sign(np.einsum("...nd,...d->...", E, v))
    sign = np.where(sign == 0, 1.0, sign)
    return v * sign[..., None] + 0.0  # + 0.0 turns -0.0 into 0.0


def center(matrix: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``T (I − v vᵀ)``: the rows of ``matrix`` without their component along unit ``direction``.

    Parameters
    ----------
    matrix : ndarray of shape (..., N, D)
    direction : ndarray of shape (..., D)
        Unit vectors.

    Returns
    -------
    ndarray of shape (..., N, D)

    Notes
    -----
    Uppaal et al., Eq. 3, with ``v`` = :func:`top_direction` of the preferred embeddings.

    Examples
    --------
    >>> center(np.array([[1.0, 2.0]]), np.array([1.0, 0.0]))
    array([[0., 2.]])
    """
    T, v = np.asarray(matrix, float), np.asarray(direction, float)
    return T - np.einsum("...n,...d->...nd", np.einsum("...nd,...d->...n", T, v), v)


def subspace_basis(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` right singular vectors of ``matrix`` and their singular values.

    Parameters
    ----------
    matrix : ndarray of shape (..., N, D)
    rank : int
        ``0 ≤ rank ≤ min(N, D)``.

    Returns
    -------
    basis : ndarray of shape (..., D, rank)
        Orthonormal columns.
    singular_values : ndarray of shape (..., rank)

    Notes
    -----
    ``P = V_k V_kᵀ`` (Uppaal et al., Eq. 4).

    Examples
    --------
    >>> basis, s = subspace_basis(np.diag([3.0, 2.0, 1.0]), 2)
    >>> np.abs(basis).round(6).tolist(), s.tolist()
    ([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [3.0, 2.0])
    """
    T = np.asarray(matrix, float)
    n, d = T.shape[-2:]
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool) or not 0 <= rank <= min(n, d):
        raise ConfigError(f"rank must be an integer in [0, {min(n, d)}] (pairs × width); got {rank!r}")
    _, s, Vt = np.linalg.svd(T, full_matrices=False)
    return np.swapaxes(Vt[..., :rank, :], -1, -2).copy(), s[..., :rank].copy()


def fit_toxic_subspace(
    preferred: np.ndarray,
    dispreferred: np.ndarray,
    rank: int = 2,
    layers: Sequence[int] | None = None,
    centering: bool = True,
) -> ToxicSubspace:
    """The toxic subspace of each layer in ``layers`` from per-layer sentence embeddings.

    Parameters
    ----------
    preferred, dispreferred : ndarray of shape (L, N, D)
        :func:`mean_hidden_states` of the preferred and dispreferred texts (``L`` blocks).
    rank : int, default 2
        Directions removed per layer.
    layers : sequence of int, optional
        Blocks to edit (default: all ``L``).
    centering : bool, default True
        Remove the top direction of the preferred embeddings first.

    Returns
    -------
    ToxicSubspace
        Directions oriented so that the dispreferred texts lie on their positive side.

    Notes
    -----
    ``T_ℓ = (E⁺_ℓ − E⁻_ℓ)/2``, ``T_ℓ ← T_ℓ (I − v_ℓ v_ℓᵀ)`` with ``v_ℓ`` the top right-singular
    vector of ``E⁺_ℓ``, then ``V_ℓ`` = top-``k`` right singular vectors of ``T_ℓ``
    (Uppaal et al., Eqs. 2–4, Algorithm 1).
    """
    preferred, dispreferred = np.asarray(preferred, float), np.asarray(dispreferred, float)
    if preferred.ndim != 3:
        raise ValueError(f"embeddings must have shape (layers, pairs, width); got {preferred.shape}")
    L = preferred.shape[0]
    layers = tuple(range(L)) if layers is None else tuple(int(i) for i in layers)
    bad = [i for i in layers if not 0 <= i < L]
    if bad:
        raise ConfigError(f"layers must be in [0, {L - 1}] (the model has {L} blocks); got {bad}")
    idx = list(layers)
    T = preference_matrix(preferred[idx], dispreferred[idx])  # (l, N, D)
    if centering:
        T = center(T, top_direction(preferred[idx]))
    basis, s = subspace_basis(T, rank)  # (l, D, k), (l, k)
    # SVD signs are arbitrary; point each direction towards the dispreferred side (T rows are pref − dispref).
    side = -np.einsum("lnd,ldk->lk", T, basis)  # (l, k), summed over pairs
    basis = basis * np.where(side < 0, -1.0, 1.0)[:, None, :]
    return ToxicSubspace(layers=layers, basis=basis, singular_values=s, kind="preference", n_pairs=preferred.shape[1])


def random_subspace(width: int, rank: int, layers: Sequence[int], rng: np.random.Generator) -> ToxicSubspace:
    """A uniformly random ``rank``-dimensional subspace per layer: the control of the edit.

    Parameters
    ----------
    width : int
        Residual-stream width ``D``.
    rank : int
    layers : sequence of int
    rng : numpy.random.Generator

    Returns
    -------
    ToxicSubspace
        ``kind="random"``; orthonormal bases from the QR decomposition of Gaussian matrices.
    """
    if not isinstance(rank, (int, np.integer)) or not 0 <= rank <= width:
        raise ConfigError(f"rank must be an integer in [0, {width}]; got {rank!r}")
    layers = tuple(int(i) for i in layers)
    G = rng.standard_normal((len(layers), width, rank))  # (l, D, k)
    basis = np.linalg.qr(G)[0] if rank else G
    return ToxicSubspace(layers=layers, basis=basis, singular_values=np.full((len(layers), rank), np.nan), kind="random", n_pairs=0)


# --- models (torch) ---------------------------------------------------------------------------


def is_own_transformer(model) -> bool:
    """Whether ``model`` is synthloop's own transformer (:class:`synthloop.nn.model.GPT`)."""
    from .nn.model import GPT

    return isinstance(model, GPT)


def mlp_output_projections(model) -> list:
    """The MLP output ("down") projection of every block.

    ``model.model.layers[i].mlp.down_proj`` for a Llama-family transformers model,
    ``model.blocks[i].mlp.down`` for synthloop's own transformer.

    Raises
    ------
    TypeError
        When the model is neither, naming what was found instead.
    """
    if is_own_transformer(model):
        return [block.mlp.down for block in model.blocks]
    try:
        layers = model.model.layers
        projections = [layer.mlp.down_proj for layer in layers]
    except AttributeError:
        raise TypeError(
            f"cannot edit {type(model).__name__}: the edit needs a Llama-family causal LM with "
            "model.model.layers[i].mlp.down_proj (e.g. SmolLM2, Llama, Qwen2, Mistral) or synthloop's "
            "own transformer (synthloop.nn.model.GPT)"
        ) from None
    return projections


def _token_ids(model, tokenizer, text: str, max_length: int) -> list[int]:
    """Token ids of ``text``, truncated to ``max_length`` (and to the own transformer's block size)."""
    if is_own_transformer(model):
        ids = tokenizer.encode(text)
        ids = list(getattr(ids, "ids", ids))  # a tokenizers.Tokenizer returns an Encoding
        return ids[:min(max_length, model.config.block_size)]
    return tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


def block_hidden_states(model, ids: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """The hidden state after every block for a right-padded batch, shape (L, B, T, D).

    Parameters
    ----------
    model : transformers causal LM or synthloop GPT
    ids, mask : Tensor of shape (B, T)
        Token ids and the attention mask (1 at real tokens).

    Notes
    -----
    For a transformers model this is ``hidden_states[1:]`` (the last one after the final norm);
    for synthloop's GPT, forward hooks collect each block's output (no final norm anywhere).
    """
    import torch

    if not is_own_transformer(model):
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return torch.stack(out.hidden_states[1:])  # (L, B, T, D)
    outputs = []
    handles = [block.register_forward_hook(lambda module, args, output: outputs.append(output)) for block in model.blocks]
    try:
        model(ids, valid=mask.bool())
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(outputs)  # (L, B, T, D)


def mean_hidden_states(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 128) -> np.ndarray:
    """Per-block sentence embeddings: the mean hidden state over each text's non-padding tokens.

    Parameters
    ----------
    model : transformers causal LM or synthloop GPT
        A transformers model must accept ``output_hidden_states=True``.
    tokenizer : transformers tokenizer, or one with ``encode(text)`` for synthloop's GPT
        A transformers tokenizer needs a pad token (the EOS token is used when it has none).
    texts : sequence of str
    batch_size : int, default 16
    max_length : int, default 128
        Longer texts are truncated.

    Returns
    -------
    ndarray of shape (L, N, D)
        Entry ``ℓ`` is the hidden state after block ``ℓ`` (:func:`block_hidden_states`).
    """
    import torch

    from .models.hf import right_padded

    if len(texts) == 0:
        raise ValueError("texts must not be empty")
    if is_own_transformer(model):
        pad_id = 0  # masked out: any id will do
    else:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            encoded = [_token_ids(model, tokenizer, t, max_length) or [pad_id] for t in texts[start:start + batch_size]]
            ids, mask = right_padded(encoded, pad_id)
            hidden = block_hidden_states(model, ids.to(device), mask.to(device)).float()  # (L, B, T, D)
            m = mask.to(device)[None, :, :, None].float()  # (1, B, T, 1)
            chunks.append(((hidden * m).sum(2) / m.sum(2)).cpu().numpy())  # (L, B, D)
    return np.concatenate(chunks, axis=1)


def project_out(weight: "torch.Tensor", basis: "torch.Tensor") -> "torch.Tensor":
    """``(I − V Vᵀ) W`` for a weight whose rows index the residual stream.

    Parameters
    ----------
    weight : Tensor of shape (D, H)
        ``nn.Linear.weight`` of a projection into the residual stream (out_features = D).
    basis : Tensor of shape (D, k)
        Orthonormal columns.

    Returns
    -------
    Tensor of shape (D, H), in ``weight``'s dtype (computed in float32 at least).
    """
    import torch

    dtype = weight.dtype
    W = weight.to(torch.promote_types(dtype, torch.float32))
    V = basis.to(W.dtype).to(W.device)  # (D, k)
    return (W - V @ (V.T @ W)).to(dtype)


def edit_model(model, subspace: ToxicSubspace):
    """Project each edited layer's subspace out of its MLP output projection, in place.

    Parameters
    ----------
    model : transformers causal LM of the Llama family, or synthloop GPT
    subspace : ToxicSubspace

    Returns
    -------
    model
        The same object, edited: block ``ℓ``'s MLP output projection becomes ``(I − P_ℓ) W_out`` (and its
        bias ``(I − P_ℓ) b`` where it has one). Applying the same edit again changes nothing.
    """
    import torch

    projections = mlp_output_projections(model)
    D = projections[0].weight.shape[0]
    if subspace.basis.shape[1] != D:
        raise ValueError(f"the subspace has width {subspace.basis.shape[1]} but the model's residual stream has width {D}")
    bad = [i for i in subspace.layers if not 0 <= i < len(projections)]
    if bad:
        raise ConfigError(f"layers must be in [0, {len(projections) - 1}] (the model has {len(projections)} blocks); got {bad}")
    with torch.no_grad():
        for i, layer in enumerate(subspace.layers):
            proj = projections[layer]
            V = torch.from_numpy(subspace.basis[i])  # (D, k)
            proj.weight.copy_(project_out(proj.weight, V))
            if getattr(proj, "bias", None) is not None:
                proj.bias.copy_(project_out(proj.bias[:, None], V)[:, 0])
    return model


def direction_tokens(model, tokenizer, subspace: ToxicSubspace, top: int = 10) -> pd.DataFrame:
    """The tokens each removed direction promotes most through the unembedding (logit lens).

    Parameters
    ----------
    model : transformers causal LM or synthloop GPT
        Its ``get_output_embeddings()`` (and the final norm's scale ``model.model.norm.weight``,
        when it has one) map the residual stream to logits; ``head`` and ``norm`` for the GPT.
    tokenizer : transformers tokenizer
    subspace : ToxicSubspace
    top : int, default 10

    Returns
    -------
    DataFrame
        Columns ``layer, direction, rank, token, score``: for each layer and direction ``j``, the
        ``top`` tokens with the largest ``(W_U diag(g) v_j)`` (``g`` the final norm's scale).
    """
    import torch

    if is_own_transformer(model):
        W_U, norm = model.head.weight.detach().float(), model.norm  # (V, D)
    else:
        W_U = model.get_output_embeddings().weight.detach().float()  # (V, D)
        norm = getattr(getattr(model, "model", None), "norm", None)
    scale = norm.weight.detach().float() if getattr(norm, "weight", None) is not None else torch.ones(W_U.shape[1])
    rows = []
    for i, layer in enumerate(subspace.layers):
        V = torch.from_numpy(subspace.basis[i]).float() * scale[:, None]  # (D, k)
        scores = W_U @ V  # (vocab, k)
        values, ids = scores.topk(min(top, scores.shape[0]), dim=0)  # (top, k)
        for j in range(subspace.rank):
            for r in range(values.shape[0]):
                rows.append({"layer": layer, "direction": j, "rank": r, "token": tokenizer.decode([int(ids[r, j])]), "score": float(values[r, j])})
    return pd.DataFrame(rows, columns=["layer", "direction", "rank", "token", "score"])
