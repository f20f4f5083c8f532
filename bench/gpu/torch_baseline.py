"""PyTorch eager baseline for the GPU check (bench/gpu/check.js): the same two architectures as
nimify's benchmark models (scripts/onnx-writer.js: the 512->2048->2048->512 MLP and the
ResNet-18-shaped conv net with batch norm folded into conv biases), random weights, fp32, eager
mode, one forward pass of batch B at a time (what a PyTorch server does per batch).

Prints one JSON object on stdout: {"torch": version, "device": name, "tf32": {...}, "models":
{name: {"1": samples_per_s, "8": ..., "64": ...}}}. Exit 3 when torch cannot be imported.
"""
import argparse
import json
import sys
import time

try:
    import torch
    from torch import nn
except Exception as err:  # noqa: BLE001 - any import failure means "no baseline here"
    print(json.dumps({"error": f"torch is not importable: {err}"}))
    sys.exit(3)


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, stride, 1)
        self.b = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride, 0) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.b(torch.relu(self.a(x)))
        return torch.relu(y + (self.skip(x) if self.skip is not None else x))


class ResNet18Shaped(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, 2, 3)
        self.pool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for stage, cout in enumerate([64, 128, 256, 512]):
            for block in range(2):
                blocks.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.blocks(self.pool(torch.relu(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def samples_per_s(model, shape, batch, device, seconds):
    x = torch.randn((batch, *shape), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        sync()
        runs, start = 0, time.perf_counter()
        while True:
            model(x)
            runs += 1
            if runs % 4 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    return round(runs * batch / elapsed, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring time per batch size")
    parser.add_argument("--models", default="mlp_mid,resnet18")
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU even when CUDA is available")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    specs = {
        "mlp_mid": (lambda: mlp([512, 2048, 2048, 512]), (512,)),
        "resnet18": (ResNet18Shaped, (3, 224, 224)),
    }
    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "models": {},
    }
    for name in [m for m in args.models.split(",") if m]:
        build, shape = specs[name]
        model = build().to(device).eval()
        out["models"][name] = {str(b): samples_per_s(model, shape, b, device, args.seconds) for b in (1, 8, 64)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
