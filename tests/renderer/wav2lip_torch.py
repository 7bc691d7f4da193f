"""Wav2Lip's generator in PyTorch, written out layer by layer (test-only, needs torch).

An independent statement of the architecture: the ONNX graph that renderer.backends.wav2lip.graph
builds from its layer table must compute the same function with the same state dict.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(
        self, cin: int, cout: int, k: int, s: int | tuple[int, int], p: int, residual: bool = False
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, op: int = 0) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, k, s, p, op), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


def _r(c: int) -> ConvBlock:
    return ConvBlock(c, c, 3, 1, 1, residual=True)


class Wav2Lip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        S = nn.Sequential
        self.face_encoder_blocks = nn.ModuleList(
            [
                S(ConvBlock(6, 16, 7, 1, 3)),  # 96
                S(ConvBlock(16, 32, 3, 2, 1), _r(32), _r(32)),  # 48
                S(ConvBlock(32, 64, 3, 2, 1), _r(64), _r(64), _r(64)),  # 24
                S(ConvBlock(64, 128, 3, 2, 1), _r(128), _r(128)),  # 12
                S(ConvBlock(128, 256, 3, 2, 1), _r(256), _r(256)),  # 6
                S(ConvBlock(256, 512, 3, 2, 1), _r(512)),  # 3
                S(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1
            ]
        )
        self.audio_encoder = S(
            ConvBlock(1, 32, 3, 1, 1),
            _r(32),
            _r(32),
            ConvBlock(32, 64, 3, (3, 1), 1),
            _r(64),
            _r(64),
            ConvBlock(64, 128, 3, 3, 1),
            _r(128),
            _r(128),
            ConvBlock(128, 256, 3, (3, 2), 1),
            _r(256),
            ConvBlock(256, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.face_decoder_blocks = nn.ModuleList(
            [
                S(ConvBlock(512, 512, 1, 1, 0)),
                S(UpBlock(1024, 512, 3, 1, 0), _r(512)),  # 3
                S(UpBlock(1024, 512, 3, 2, 1, 1), _r(512), _r(512)),  # 6
                S(UpBlock(768, 384, 3, 2, 1, 1), _r(384), _r(384)),  # 12
                S(UpBlock(512, 256, 3, 2, 1, 1), _r(256), _r(256)),  # 24
                S(UpBlock(320, 128, 3, 2, 1, 1), _r(128), _r(128)),  # 48
                S(UpBlock(160, 64, 3, 2, 1, 1), _r(64), _r(64)),  # 96
            ]
        )
        self.output_block = S(ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, mel: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        x = self.audio_encoder(mel)
        feats = []
        y = face
        for block in self.face_encoder_blocks:
            y = block(y)
            feats.append(y)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)
        return self.output_block(x)


def randomised(seed: int = 0) -> Wav2Lip:
    """An eval-mode model with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = Wav2Lip()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.8, 1.2)
                module.bias.normal_(0, 0.05)
                module.running_mean.normal_(0, 0.05)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()
