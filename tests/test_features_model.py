import torch

from speechlstm.config import FeatureConfig, ModelConfig
from speechlstm.features import MFCC
from speechlstm.model import KeywordBiLSTM, count_parameters


def test_mfcc_shapes_and_determinism():
    cfg = FeatureConfig()
    torch.manual_seed(0)
    wave = 0.1 * torch.randn(3, cfg.clip_samples)
    feats = MFCC(cfg)(wave)
    assert feats.shape == (3, cfg.n_frames, cfg.n_mfcc) == (3, 101, 40)
    assert torch.equal(feats, MFCC(cfg)(wave))  # a fresh module gives the same numbers
    single = MFCC(cfg)(wave[1])  # 1-D input is a batch of one
    torch.testing.assert_close(single[0], feats[1], rtol=1e-4, atol=1e-4)


def test_per_utterance_normalisation():
    cfg = FeatureConfig(norm="cmvn")
    wave = 0.3 * torch.randn(2, cfg.clip_samples)
    feats = MFCC(cfg)(wave)
    torch.testing.assert_close(feats.mean(1), torch.zeros(2, cfg.n_mfcc), atol=1e-4, rtol=0)
    louder = MFCC(cfg)(wave * 4)  # gain is removed by the normalisation
    torch.testing.assert_close(louder, feats, atol=1e-3, rtol=1e-3)
    silent = MFCC(cfg)(torch.zeros(1, cfg.clip_samples))
    assert torch.isfinite(silent).all() and silent.abs().max() < 1e-4


def test_hop_changes_frame_count():
    cfg = FeatureConfig(hop_ms=20, win_ms=30, n_mfcc=13)
    assert MFCC(cfg)(torch.zeros(1, 16000)).shape == (1, 51, 13)


def test_model_forward_shapes_and_size():
    fc = FeatureConfig()
    for mc in (ModelConfig(), ModelConfig(pooling="meanmax", conv_channels=32, conv_stride=2)):
        net = KeywordBiLSTM(fc, mc, 12).eval()
        assert net(torch.zeros(4, 16000)).shape == (4, 12)
    assert 200_000 <= count_parameters(KeywordBiLSTM(fc, ModelConfig(), 12)) <= 800_000


def test_model_is_deterministic_in_eval_and_batch_independent():
    torch.manual_seed(0)
    net = KeywordBiLSTM(FeatureConfig(), ModelConfig(), 12).eval()
    wave = 0.1 * torch.randn(5, 16000)
    with torch.no_grad():
        batch = net(wave)
        one = torch.cat([net(w[None]) for w in wave])
    torch.testing.assert_close(batch, one, rtol=1e-4, atol=1e-5)


def test_mfcc_is_torchaudios_mfcc():
    """The fast path computes exactly what torchaudio.transforms.MFCC does, with its own buffers."""
    for cfg in (FeatureConfig(), FeatureConfig(hop_ms=20, win_ms=40, n_mels=64, n_mfcc=20, f_min=50)):
        m = MFCC(cfg)
        wave = 0.2 * torch.randn(3, cfg.clip_samples, generator=torch.Generator().manual_seed(0))
        wave[1] = 0.0  # silence goes through the log offset
        reference = m.mfcc(wave).transpose(1, 2)  # torchaudio's own forward: (B, T, n_mfcc)
        torch.testing.assert_close(m._mfcc(wave), reference, atol=1e-4, rtol=1e-5)


def test_matmul_fft_front_end_computes_the_same_features():
    """The export-time spectrum (two-stage FFT in matrix products) equals torch.stft's,
    for the default and for other window/hop/rate settings, odd lengths and silence."""
    configs = (FeatureConfig(), FeatureConfig(hop_ms=20, win_ms=40, n_mels=64, n_mfcc=20, f_min=50),
               FeatureConfig(sample_rate=8000, f_max=4000, hop_ms=12.5), FeatureConfig(dynamic_range_db=50.0))
    for cfg in configs:
        m = MFCC(cfg)
        wave = 0.2 * torch.randn(3, cfg.clip_samples + 37, generator=torch.Generator().manual_seed(1))
        wave[1] = 0.0
        reference = m(wave)
        keys = set(m.state_dict())
        assert m.use_graph_fft().graph_fft
        torch.testing.assert_close(m(wave), reference, atol=1e-4, rtol=1e-4)
        assert set(m.state_dict()) == keys  # its matrices are derived, not saved in checkpoints
        assert torch.equal(m.use_graph_fft(False)(wave), reference)


def _word_in_noise(cfg: FeatureConfig, noise_db: float) -> torch.Tensor:
    """A 300 ms "word" (a chirpy tone burst) at -10 dBFS in white noise at ``noise_db`` dBFS."""
    g = torch.Generator().manual_seed(3)
    t = torch.arange(cfg.clip_samples) / cfg.sample_rate
    word = 0.3 * torch.sin(2 * torch.pi * (300 + 900 * t) * t) * ((t > 0.4) & (t < 0.7))
    return word + 10 ** (noise_db / 20) * torch.randn(cfg.clip_samples, generator=g)


def test_dynamic_range_floor_makes_digital_silence_look_like_a_quiet_room():
    """A gated input (the noise before the word zeroed) moves the features far without the
    floor, and little with it; the floor's level follows the clip's loudest frame."""
    plain, floored = MFCC(FeatureConfig()), MFCC(FeatureConfig(dynamic_range_db=50.0))
    wave = _word_in_noise(FeatureConfig(), noise_db=-70)
    gated = wave.clone()
    gated[:6000] = 0.0  # digital silence up to 25 ms before the word
    shift = {name: (m(gated) - m(wave)).abs().mean().item() for name, m in (("plain", plain), ("floored", floored))}
    assert shift["floored"] < 0.25 * shift["plain"], shift
    # the floor follows the level: 20 dB quieter moves the floored features a tenth as far
    quieter = {name: (m(gated * 0.1) - m(gated)).abs().mean().item() for name, m in (("plain", plain), ("floored", floored))}
    assert quieter["floored"] < 0.1 * quieter["plain"], quieter
    # where the noise is well above the floor, the floor changes little
    noisy = _word_in_noise(FeatureConfig(), noise_db=-40)
    assert (floored(noisy) - plain(noisy)).abs().mean() < 0.1 * shift["plain"]


def test_dynamic_range_must_be_positive():
    import pytest

    from speechlstm.errors import ConfigError

    for bad in (0.0, -10.0, 200.0):
        with pytest.raises(ConfigError, match="dynamic_range_db"):
            FeatureConfig(dynamic_range_db=bad)
