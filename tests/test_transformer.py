import torch
from conftest import assert_golden

from restorevar.models.layers import rope_angles
from restorevar.models.presets import get_preset
from restorevar.models.restorevar.transformer import RestoreVARTransformer


def record_block0_input(transformer):
    inputs = []
    hook = transformer.blocks[0].register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    return inputs, hook


def test_golden_teacher_forcing_given_condition(golden_model, golden_restorevar):
    _, expected = golden_restorevar
    transformer = golden_model.transformer
    outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o)) for b in transformer.blocks]
    block0_in, hook0 = record_block0_input(transformer)
    with torch.no_grad():
        logits = transformer(expected["tf_x_BLCv_wo_first_l"], expected["tf_cond_fs3"])
    for h in hooks + [hook0]:
        h.remove()
    assert_golden(block0_in[0], expected["tf_block0_in"], 1e-4)
    assert_golden(outputs[0], expected["tf_block0_out"], 1e-4)
    assert_golden(outputs[1], expected["tf_block1_out"], 1e-4)
    assert_golden(logits, expected["tf_logits"], 1e-4)


def test_golden_condition_tokens(golden_model, golden_restorevar):
    _, expected = golden_restorevar
    t = golden_model.transformer
    with torch.no_grad():
        tokens = t.cond_embed(t.cond_proj(expected["tf_cond_fs3"])) + t.cond_level_embed.weight[0]
    assert_golden(tokens, expected["tf_cond_BLC"], 1e-4)


def test_golden_end_to_end_teacher_forcing(golden_model, golden_restorevar):
    inputs, expected = golden_restorevar
    vqvae = golden_model.vqvae
    with torch.no_grad():
        gt = vqvae.tokenize(inputs["clean"])
        x = vqvae.quantizer.teacher_forcing_input(gt, 8)
        cond = vqvae.encode_continuous(inputs["degraded"]).flatten(2).transpose(1, 2)
        logits = golden_model.transformer(x, cond)
    assert all(torch.equal(idx, expected[f"tf_gt_idx_s{k}"]) for k, idx in enumerate(gt))
    assert_golden(cond, expected["tf_cond_fs3"], 1e-3)
    assert_golden(logits, expected["tf_logits"], 1e-3)


def test_golden_greedy_generation(golden_model, golden_restorevar):
    _, expected = golden_restorevar
    block0_in, hook = record_block0_input(golden_model.transformer)
    gen = golden_model.transformer.generate(expected["tf_cond_fs3"], golden_model.vqvae.quantizer, return_logits=True)
    hook.remove()
    for k, idx in enumerate(gen.indices):
        assert torch.equal(idx, expected[f"ar_idx_s{k}"]), f"greedy tokens differ at scale {k}"
    assert_golden(gen.logits_BLV, expected["ar_logits"], 1e-3)
    assert_golden(torch.cat(block0_in, dim=1), expected["ar_block0_in"], 1e-3)
    assert_golden(gen.hidden_BLC, expected["ar_last_block"], 1e-3)
    assert_golden(gen.f_hat_BChw.flatten(2).transpose(1, 2), expected["ar_fhat_tokens"], 1e-3)


def test_kv_cache_equals_block_causal_mask(golden_model, golden_restorevar):
    """Teacher forcing on the generated tokens reproduces the cached generation's logits."""
    _, expected = golden_restorevar
    t, q = golden_model.transformer, golden_model.vqvae.quantizer
    gen = t.generate(expected["tf_cond_fs3"], q, return_logits=True)
    with torch.no_grad():
        logits = t(q.teacher_forcing_input(gen.indices, 8), expected["tf_cond_fs3"])
    torch.testing.assert_close(logits, gen.logits_BLV, rtol=0, atol=1e-4)


def test_rope_tables_match_official_buffers():
    import torch as th
    from conftest import GOLDEN

    official = th.load(GOLDEN / "restorevar_tiny" / "restorevar.pth", weights_only=True)
    angles = rope_angles((1, 2, 3, 4, 6, 8), 8, 64, 10000.0)
    assert torch.equal(torch.polar(torch.ones_like(angles), angles), official["freqs_cis"])
    grid = rope_angles((8,), 8, 64, 10000.0)
    assert torch.equal(torch.polar(torch.ones_like(grid), grid), official["freqs_cis_cross"])


def test_block_causal_mask_matches_official(golden_model):
    from conftest import GOLDEN

    official = torch.load(GOLDEN / "restorevar_tiny" / "restorevar.pth", weights_only=True)["attn_bias_for_masking"]
    assert torch.equal(golden_model.transformer.block_causal_mask(), official[0, 0] == 0)


def test_paper_parameter_count():
    config = get_preset("paper-512")
    with torch.device("meta"):
        transformer = RestoreVARTransformer(config.transformer, config.tokenizer)
    assert sum(p.numel() for p in transformer.parameters()) == 273_986_097
    block = transformer.blocks[0]
    assert sum(p.numel() for p in block.cross_attn.parameters()) == 4_199_441


def test_gains_start_at_zero(tiny_config):
    t = RestoreVARTransformer(tiny_config.transformer, tiny_config.tokenizer)
    assert t.global_gain.item() == 0.0
    assert all(b.cross_attn.gain.item() == 0.0 for b in t.blocks)


def reference_generate(transformer, cond_BNCv, quantizer):
    """The straightforward path, as in the paper's code: at every scale rerun the whole prefix with the
    block-causal mask and recompute the cross-attention K/V of the condition; no caches at all."""
    B, side, bounds = cond_BNCv.shape[0], transformer.patch_nums[-1], transformer.scale_bounds
    indices, f_hat, inputs = [], 0, []
    for k in range(len(transformer.patch_nums)):
        end = bounds[k + 1]
        prefix = torch.cat(inputs, 1) if inputs else cond_BNCv.new_zeros(B, 0, cond_BNCv.shape[2])
        x = torch.cat([transformer.prepare_condition(cond_BNCv).start_BC[:, None], transformer.token_embed(prefix)], 1)
        x = x + transformer.scale_embed(transformer.scale_ids[:end])
        rope = (transformer.rope_cos[:end], transformer.rope_sin[:end])
        for block, kv in zip(transformer.blocks, transformer.prepare_condition(cond_BNCv).kv):
            x = block(x, rope, kv, mask_LL=transformer.block_causal_mask()[:end, :end])
        indices.append(transformer.logits(x[:, bounds[k] : end]).argmax(-1))
        f_hat = f_hat + quantizer.upsample_and_phi(quantizer.embed(indices[-1], side), k, side)
        if k + 1 < len(transformer.patch_nums):
            inputs.append(quantizer.downsample_flat(f_hat, transformer.patch_nums[k + 1]))
    return indices, f_hat, x


def test_fast_generation_equals_the_straightforward_path(golden_model, golden_restorevar):
    """Bit-identical greedy tokens and the same latent: KV cache + once-per-image condition K/V change nothing."""
    _, expected = golden_restorevar
    t, q = golden_model.transformer, golden_model.vqvae.quantizer
    with torch.no_grad():
        ref_indices, ref_f_hat, ref_last = reference_generate(t, expected["tf_cond_fs3"], q)
    fast = t.generate(expected["tf_cond_fs3"], q)
    assert all(torch.equal(a, b) for a, b in zip(fast.indices, ref_indices))
    torch.testing.assert_close(fast.f_hat_BChw, ref_f_hat, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.hidden_BLC, ref_last, rtol=0, atol=1e-4)
