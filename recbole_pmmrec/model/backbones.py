"""Pre-trained backbones run in two parts: the frozen blocks below a split, and the rest.

When only the top K blocks of an encoder train, everything below them gives the same output
for an item at every step: the item encoder computes that boundary once
(:mod:`recbole_pmmrec.model.feature_cache`) and runs only the top part per step. A
:class:`Backbone` knows how to run its network from the input to any block boundary and
from there to the output::

    states = backbone.top(backbone.bottom(inputs, token_mask, split), token_mask, split)

equals the network's own output (:meth:`Backbone.check_split` compares them on a probe
batch). ``split = n_blocks`` puts the whole network below the boundary (a frozen encoder:
its output is what gets cached); ``split = 0`` runs everything per step.

A Backbone is a view of a network module, not a module itself: the network's parameters
keep their names in the model's ``state_dict``.
"""

import torch


class Backbone:
    """A network seen as ``embed -> blocks[0..n) -> finish``.

    Subclasses implement :meth:`embed` (inputs -> hidden states), :meth:`block_mask` (the
    mask the blocks take, from the per-token mask), :meth:`run_block`, :meth:`finish` (last
    hidden states -> output token states) and :meth:`full` (the network's own forward).
    """

    splittable = True  # any split of the blocks works (else only 0 and n_blocks)
    finish_modules = ()  # attribute names of the modules ``finish`` runs (they train with the top blocks)

    def __init__(self, network, blocks):
        self.network = network
        self.blocks = blocks

    @property
    def n_blocks(self):
        return len(self.blocks)

    def bottom(self, inputs, token_mask, split):
        """Hidden states entering block ``split`` (the output if ``split = n_blocks``)."""
        hidden = self.embed(inputs)
        mask = self.block_mask(hidden, token_mask)
        for block in self.blocks[:split]:
            hidden = self.run_block(block, hidden, mask)
        return self.finish(hidden) if split == self.n_blocks else hidden

    def top(self, hidden, token_mask, split):
        """The output token states from the hidden states entering block ``split``."""
        if split == self.n_blocks:
            return hidden
        mask = self.block_mask(hidden, token_mask)
        for block in self.blocks[split:]:
            hidden = self.run_block(block, hidden, mask)
        return self.finish(hidden)

    def check_split(self, inputs, token_mask, split, atol=1e-4):
        """Whether ``top(bottom(...))`` reproduces the network's own output on ``inputs``
        (compared in eval mode: dropout would make two passes differ)."""
        modes = [(module, module.training) for module in self.network.modules()]
        self.network.eval()
        try:
            with torch.no_grad():
                hidden = self.bottom(inputs, token_mask, split)
                return torch.allclose(self.top(hidden, token_mask, split), self.full(inputs, token_mask), atol=atol)
        finally:
            for module, training in modes:  # e.g. trainable top blocks in train mode under a frozen root
                module.train(training)


class WholeNetwork(Backbone):
    """Any other network: no inner boundary (``split`` is 0 or ``n_blocks``); ``blocks`` only
    name the blocks that train. Inputs are passed to ``forward`` as they come."""

    splittable = False

    def __init__(self, network, blocks, forward):
        super().__init__(network, blocks)
        self._forward = forward

    def bottom(self, inputs, token_mask, split):
        return self.full(inputs, token_mask) if split == self.n_blocks else inputs

    def top(self, hidden, token_mask, split):
        return hidden if split == self.n_blocks else self.full(hidden, token_mask)

    def full(self, inputs, token_mask):
        return self._forward(inputs, token_mask)


class HFTransformer(Backbone):
    """A Hugging Face encoder of the BERT family (BERT, RoBERTa, XLM-R, MiniLM, ELECTRA):
    ``embeddings`` then ``encoder.layer``; inputs: token ids, token mask: attention mask."""

    def __init__(self, network):
        super().__init__(network, network.encoder.layer)

    def embed(self, input_ids):
        return self.network.embeddings(input_ids=input_ids)

    def block_mask(self, hidden, token_mask):
        try:
            from transformers.masking_utils import create_bidirectional_mask
        except ImportError:  # transformers 4
            return self.network.get_extended_attention_mask(token_mask, token_mask.shape)
        return create_bidirectional_mask(config=self.network.config, inputs_embeds=hidden, attention_mask=token_mask)

    def run_block(self, block, hidden, mask):
        out = block(hidden, mask)
        return out[0] if isinstance(out, tuple) else out

    def finish(self, hidden):
        return hidden

    def full(self, input_ids, token_mask):
        return self.network(input_ids=input_ids, attention_mask=token_mask).last_hidden_state


class PixelBackbone(Backbone):
    """A vision network: its inputs are normalised pixels, its blocks take the hidden states
    alone (no token mask)."""

    def block_mask(self, hidden, token_mask):
        return None

    def run_block(self, block, hidden, mask):
        return block(hidden)


class OpenClipViT(PixelBackbone):
    """An open_clip ``VisionTransformer``: patch embedding (+ class token, positions,
    ``ln_pre``), ``transformer.resblocks``, then ``ln_post`` on every token; inputs: the
    normalised pixels (no token mask)."""

    finish_modules = ("ln_post",)

    def __init__(self, network):
        if not network.transformer.batch_first:
            raise ValueError("open_clip vision towers must run batch-first")
        super().__init__(network, network.transformer.resblocks)
        self.width = network.ln_post.normalized_shape[0]

    def embed(self, pixels):
        return self.network._embeds(pixels)

    def finish(self, hidden):
        return self.network.ln_post(hidden)

    def full(self, pixels, token_mask):
        out = self.network.forward_intermediates(
            pixels,
            indices=1,
            normalize_intermediates=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        return torch.cat([out["image_intermediates_prefix"][0], out["image_intermediates"][0]], dim=1)


class TimmCNN(PixelBackbone):
    """A timm EfficientNet-style CNN (``conv_stem``, ``bn1``, ``blocks`` in stages,
    ``conv_head``, ``bn2``); its blocks are the individual blocks of every stage. Its token
    states are the last feature map's spatial positions, after the pooled vector as a first
    token; inputs: the normalised pixels (no token mask)."""

    finish_modules = ("conv_head", "bn2")

    def __init__(self, network):
        super().__init__(network, [block for stage in network.blocks for block in stage])
        self.width = network.num_features

    def embed(self, pixels):
        return self.network.bn1(self.network.conv_stem(pixels))

    def finish(self, hidden):
        return _map_tokens(self.network.bn2(self.network.conv_head(hidden)))

    def full(self, pixels, token_mask):
        return _map_tokens(self.network.forward_features(pixels))


def _map_tokens(feature_map):
    """``[N, C, H, W]`` -> ``[N, 1 + H*W, C]``: the mean over positions, then each position."""
    tokens = feature_map.flatten(2).transpose(1, 2)
    return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
