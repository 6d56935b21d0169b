"""`genprint demo`: the whole story on this machine in one command.

Starts local Ray Serve with genprint's shipped bundle (or --model) and a SQLite registry, creates two tenants (and a
moderator), registers users, generates an image per user through HTTP (from encoded photos by default: no
text-to-image model can be had offline), attacks some (JPEG, crop), attributes every version through HTTP with the
high-rate CNN reader, prints a table, writes the images and a figure, and shuts everything down."""

from __future__ import annotations

TENANTS = {"acme": ["alice", "bob", "carol"], "globex": ["dave", "erin"]}
MODERATOR = "moderation"
PROMPTS = ["a lighthouse at dusk", "a bowl of ramen", "a red fox in snow", "a city street in rain", "a sailing boat"]


def add_parser(subparsers) -> None:
    from genprint.cli.options import add_model_option, add_reader_options

    p = subparsers.add_parser(
        "demo",
        help="end-to-end demo: serve, generate per user over HTTP, attack, attribute, report",
        description=__doc__,
    )
    add_model_option(p)
    p.add_argument("--out", default="genprint-demo", help="folder for the registry, images and figure")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument(
        "--pipeline",
        default="photos",
        help="what makes the latents (serving setting `pipeline`): 'photos', encoded photos standing in for a "
        "text-to-image model (none can be had offline); 'tiny', an untrained diffusion pipeline whose "
        "textures are unlike any photo; or a diffusers folder",
    )
    p.add_argument("--diffusion-steps", type=int, default=4)
    p.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    add_reader_options(p, rotation=False)  # the Serve attribution deployment's `reader` and `inversion_steps`
    p.set_defaults(func=run)


def attacks(png: bytes) -> dict[str, bytes]:
    """The clean image and two real-world edits, as the bytes a platform would receive."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = image.size
    out = {"clean": png}
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=75)
    out["jpeg75"] = buf.getvalue()
    buf = io.BytesIO()
    image.crop((w // 8, h // 8, w - w // 8, h - h // 8)).save(buf, format="PNG")  # 75% of each side kept, not resized
    out["crop75"] = buf.getvalue()
    return out


def run(args) -> int:
    import base64
    import concurrent.futures as cf
    import json
    from pathlib import Path

    import httpx
    from rich.progress import track
    from rich.table import Table

    from genprint.bundle import read_config
    from genprint.cli import console as cli_console
    from genprint.cli.options import model_dir
    from genprint.fingerprint import Decision
    from genprint.registry import Registry
    from serving.local import LocalServe
    from serving.settings import ServeSettings

    console = cli_console()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    bundle = model_dir(args)
    config = read_config(bundle)
    model_id, nbits = config["model_id"], config["nbits"]

    db = out / "registry.db"
    db.unlink(missing_ok=True)  # a fresh registry each run: the demo owns this folder
    registry_url = f"sqlite:///{db.resolve()}"
    registry = Registry(registry_url)
    keys = {}
    for tenant, users in {**TENANTS, MODERATOR: []}.items():
        t, keys[tenant] = registry.create_tenant(tenant)
        if users:
            registry.register_users(t, model_id, nbits, names=users)
    console.print(f"registry {db}: tenants {list(keys)}; users {TENANTS}")

    settings = ServeSettings.load(
        {
            "model": str(bundle.resolve()),
            "registry_url": registry_url,
            "image_size": args.image_size,
            "steps": args.diffusion_steps,
            "pipeline": args.pipeline,
            "moderator_tenants": [MODERATOR],
            "reader": args.reader,
            "inversion_steps": args.inversion_steps,
        }
    )
    rows = []
    with console.status("starting local Ray Serve ..."):
        stack = LocalServe(settings, port=args.port).start()
    try:
        console.print(f"serving at {stack.url} (docs {stack.url}/docs), model {model_id}")
        with httpx.Client(base_url=stack.url, timeout=300) as client:

            def generate(i_user):
                i, (tenant, user) = i_user
                r = client.post(
                    "/v1/generate",
                    headers={"X-API-Key": keys[tenant]},
                    json={"tenant": tenant, "user": user, "prompt": PROMPTS[i % len(PROMPTS)], "seed": 1000 + i},
                )
                r.raise_for_status()
                return tenant, user, r.json()

            pairs = [(t, u) for t, users in TENANTS.items() for u in users]
            with (
                console.status(f"generating {len(pairs)} images over HTTP (batched across users) ..."),
                cf.ThreadPoolExecutor(8) as pool,
            ):
                generated = list(pool.map(generate, enumerate(pairs)))
            queries = []
            for tenant, user, body in generated:
                png = base64.b64decode(body["images"][0]["png_base64"])
                for attack, data in attacks(png).items():
                    name = f"{tenant}-{user}-{attack}.{'jpg' if attack.startswith('jpeg') else 'png'}"
                    (out / "images" / name).write_bytes(data)
                    queries += [(tenant, user, attack, name, data, caller) for caller in (tenant, MODERATOR)]
            for tenant, user, attack, name, data, caller in track(
                queries, console=console, description=f"attributing with the {args.reader} reader"
            ):
                r = client.post(
                    "/v1/attribute",
                    content=data,
                    headers={
                        "X-API-Key": keys[caller],
                        "Content-Type": "image/jpeg" if "jpeg" in name else "image/png",
                    },
                )
                r.raise_for_status()
                rows.append(
                    {
                        "image": name,
                        "true_tenant": tenant,
                        "true_user": user,
                        "attack": attack,
                        "caller": caller,
                        **r.json(),
                    }
                )
    finally:
        with console.status("shutting down Ray Serve ..."):
            stack.stop()

    table = Table(title=f"attribution through HTTP (model {model_id}, {nbits} bits)")
    table.add_column("image", no_wrap=True)
    for col in ("caller", "attributed to", "distance", "p-value", "correct"):
        table.add_column(col)
    for r in rows:
        correct = r["correct"] = bool(
            r["attributed"] and (r["tenant"], r["user"]) == (r["true_tenant"], r["true_user"])
        )
        who = f"{r['tenant']}/{r['user']}" if r["attributed"] else f"[dim]not attributed (nearest {r['user']})[/dim]"
        p = f"{r['p_value']:.1e}" if r["p_value"] is not None else "-"
        table.add_row(
            r["image"], r["caller"], who, str(r["distance"]), p, "[green]yes[/green]" if correct else "[red]no[/red]"
        )
    console.print(table)
    (out / "attribution.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out, nbits, Decision(nbits, sum(map(len, TENANTS.values())), settings.fpr).max_distance)
    summary = {
        a: sum(r["correct"] for r in rows if r["attack"] == a) / max(1, sum(r["attack"] == a for r in rows))
        for a in ("clean", "jpeg75", "crop75")
    }
    console.print("correctly attributed: " + ", ".join(f"{a} {v:.0%}" for a, v in summary.items()))
    console.print(f"wrote {out / 'images'}, {out / 'attribution.json'}, {out / 'demo.png'}")
    return 0


def plot(rows: list[dict], out, nbits: int, threshold: int) -> None:
    """Top: the clean renders; bottom: the moderator's distance to the nearest user per attack, and its threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    clean = [r for r in rows if r["attack"] == "clean" and r["caller"] == MODERATOR]
    fig = plt.figure(figsize=(2.2 * max(len(clean), 3), 5.5))
    for i, r in enumerate(clean):
        ax = fig.add_subplot(2, len(clean), i + 1)
        ax.imshow(Image.open(out / "images" / r["image"]))
        ax.set_title(f"{r['true_tenant']}/{r['true_user']}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    attacks = ["clean", "jpeg75", "crop75"]
    for j, a in enumerate(attacks):
        d = [r["distance"] for r in rows if r["attack"] == a and r["caller"] == MODERATOR and r["correct"]]
        miss = [r["distance"] for r in rows if r["attack"] == a and r["caller"] == MODERATOR and not r["correct"]]
        ax.scatter([j] * len(d), d, color="tab:green", label="attributed correctly" if j == 0 else None)
        ax.scatter([j] * len(miss), miss, color="tab:red", marker="x", label="missed / wrong" if j == 0 else None)
    ax.axhline(nbits / 2, color="grey", ls="--", lw=0.8, label="chance (n/2)")
    ax.axhline(threshold + 0.5, color="tab:green", ls=":", lw=0.8, label=f"attributed at <= {threshold} (moderator)")
    ax.set_xticks(range(len(attacks)), attacks)
    ax.set_ylabel("Hamming distance to nearest user")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=120)
    plt.close(fig)
