"""Hive: the running server's live status, polled every couple of seconds in a worker."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Sparkline, Static

from appliance.core.errors import AlveareError, ServerUnavailable
from appliance.core.protocol import HiveStatus
from tui.format import duration, fit_series, human_bytes, human_count, number
from tui.screens.base import View

BOXES = ("model", "device", "slots", "queue", "speed", "cache", "errors")


class HiveView(View, can_focus=True):
    TITLE = "Hive"
    KEY = "1"
    HELP = "Live status of the running server"
    BINDINGS = [Binding("ctrl+r,f5", "poll_now", "Refresh now")]

    def compose(self) -> ComposeResult:
        yield Static("Connecting to the server…", id="hive-state")
        with Vertical(id="hive-live"):
            with Grid(id="hive-grid"):
                for name in BOXES:
                    box = Static("", id=f"box-{name}", classes="box")
                    box.border_title = name.title()
                    yield box
            with Horizontal(classes="chart-row"):
                yield Static("tokens/s", classes="chart-label")
                yield Sparkline([], id="spark-tokens", summary_function=max)
                yield Static("", id="spark-tokens-now", classes="chart-now")
            with Horizontal(classes="chart-row"):
                yield Static("requests/min", classes="chart-label")
                yield Sparkline([], id="spark-requests", summary_function=max)
                yield Static("", id="spark-requests-now", classes="chart-now")
            yield Static("", id="hive-window", classes="muted")
            yield Static("", id="hive-nodes")

    def on_resize(self) -> None:
        if self.app.size.width != self._drawn_for:
            self._draw_series()

    def _draw_series(self) -> None:
        """Equal-width bars: a whole number of columns per sample (or samples merged by maximum)."""
        # The terminal's width less the padding, the label and the peak columns.
        self._drawn_for = self.app.size.width
        available = self.app.size.width - 2 - 14 - 12
        series_by_name: dict[str, list[float]] = getattr(self, "_series", {})
        for name, series in series_by_name.items():
            spark = self.query_one(f"#spark-{name}", Sparkline)
            data, width = fit_series(series, available)
            spark.data = data
            spark.styles.width = width
        samples = len(series_by_name.get("tokens", []))
        if samples:
            bars = len(fit_series(series_by_name["tokens"], available)[0])
            per_bar = self._step * samples / bars
            window = f"last {samples * self._step / 60:.0f} min, {per_bar:g} s per bar (highest in each)"
            if per_bar == self._step:
                window = f"last {samples * self._step / 60:.0f} min, {per_bar:g} s per bar"
        else:
            window = "no requests metered yet"
        self.query_one("#hive-window", Static).update(window)

    def on_mount(self) -> None:
        self._step = 10.0
        self._drawn_for = 0
        self.query_one("#hive-live").display = False
        interval = self.alveare.poll_interval
        if interval:
            self.set_interval(interval, self.tick)
            self.tick()

    def tick(self) -> None:
        """Start a poll unless one is still waiting for a slow server (polls never pile up)."""
        if not any(w.group == "hive-poll" and w.is_running for w in self.workers):
            self.poll()

    def reload(self) -> None:
        self.tick()

    def action_poll_now(self) -> None:
        self.tick()

    @work(thread=True, group="hive-poll", exit_on_error=False)
    def poll(self) -> None:
        """One status poll (in a thread). Offline or failing, it says so and the next tick retries."""
        app = self.alveare
        backend = app.ensure_online()
        try:
            status = backend.hive_status()
        except ServerUnavailable as exc:
            app.call_from_thread(self.show_down, app.connect_error or exc.message)
            app.server_lost()
            return
        except AlveareError as exc:
            app.call_from_thread(self.show_down, f"The server answered with an error: {exc.message}")
            return
        except Exception as exc:
            app.call_from_thread(self.show_down, f"Could not read the status: {exc}")
            return
        app.call_from_thread(self.show_status, status)

    def show_down(self, reason: str) -> None:
        interval = self.alveare.poll_interval
        retry = f" Retrying every {interval:g} s." if interval else ""
        text = Text()
        text.append("● Server down", style="bold red")
        text.append(f"  {reason}{retry}\n", style="")
        text.append(
            "Accounts, plans, keys, specialists and custom prompts still work: changes go straight to the data dir "
            "and a server started later reads them. Live status and the try-it panel need the server.",
            style="dim",
        )
        state = self.query_one("#hive-state", Static)
        state.update(text)
        state.set_class(True, "down")
        self.query_one("#hive-live").display = False

    def show_status(self, s: HiveStatus) -> None:
        state = self.query_one("#hive-state", Static)
        state.set_class(False, "down")
        head = Text()
        if s.loaded:
            head.append("● Server up", style="bold green")
        elif s.load_error:
            head.append("● Model failed to load", style="bold red")
        else:
            head.append("● Model loading", style="bold yellow")
        head.append(f"  Alveare {s.version} · uptime {duration(s.uptime_seconds)} · {number(s.requests_served)} served")
        if s.load_error:
            head.append(f"\n{s.load_error}", style="red")
        model, cpu = s.model, s.cpu
        if cpu.kernels == "safe" and cpu.kernels_source == "check":
            head.append(f"\nSafe CPU kernels: {cpu.kernels_reason}", style="yellow")
        if model.optimized_from:
            head.append(f"\nServing the optimised copy {model.file} (alveare model optimize)", style="dim")
        if model.solo_file:
            head.append(f"\nA request running alone decodes on {model.solo_file} (the solo lane)", style="dim")
        if model.chat_template:
            head.append(f"\nChat template: {model.chat_template}", style="dim")
        if s.tuning:
            # The machine-tuning pieces that are on, in one line that fits 80 columns (each piece's state:
            # `alveare hives status`).
            on = ", ".join(line.name for line in s.tuning if line.on) or "none"
            head.append(f"\nTuning on: {on}", style="dim")
        state.update(head)
        self.query_one("#hive-live").display = True

        def box(name: str, content: str | Text) -> None:
            self.query_one(f"#box-{name}", Static).update(content)

        box("model", f"{model.name}\n{human_bytes(model.size_bytes)} · {human_count(model.n_params)} params")
        if model.gpu_layers > 0:
            device = Text(f"{model.device.upper()}\n{model.gpu_layers} layers on GPU")
        elif cpu.kernels:
            # Which llama.cpp CPU kernels the startup check left us with (safe = slower prefill).
            device = Text(f"{model.device.upper()}\n")
            device.append(f"{cpu.kernels} kernels", style="yellow" if cpu.kernels == "safe" else "")
        else:
            device = Text(f"{model.device.upper()}\nno GPU offload")
        box("device", device)
        busy_style = "bold red" if s.slots_busy >= s.slots_total else "bold"
        slots = Text(f"{s.slots_busy} / {s.slots_total}", style=busy_style)
        slots.append(" busy\n", style="")
        slots.append(f"ctx {number(s.kv.context_length)}", style="dim")
        box("slots", slots)
        box("queue", f"{s.queue_depth} waiting\nlimit {s.queue_limit}")
        box("speed", f"{s.tokens_per_second:,.1f} tok/s\n{number(s.requests_per_minute)} req/min")
        box("cache", f"{s.prefix_cache_hit_rate * 100:.0f}% hits\n{number(s.prefix_cache_lookups)} lookups")
        if s.errors_by_status:
            parts = [f"{code}: {n}" for code, n in sorted(s.errors_by_status.items())]
            box("errors", Text("  ".join(parts), style="red"))
        else:
            box("errors", Text("none", style="green"))

        history = s.history
        step = 10.0
        if len(history) >= 2:
            step = max(1.0, float(history[1].t - history[0].t))
        tokens = [sample.tokens / step for sample in history]
        requests = [sample.requests * 60.0 / step for sample in history]
        self._series = {"tokens": tokens, "requests": requests}
        self._step = step
        self._draw_series()
        self.query_one("#spark-tokens-now", Static).update(f"peak {max(tokens, default=0):,.0f}")
        self.query_one("#spark-requests-now", Static).update(f"peak {max(requests, default=0):,.0f}")
        self._show_nodes(s)

    def _show_nodes(self, s: HiveStatus) -> None:
        """A cluster's nodes (on a shared PostgreSQL store), this one marked; hidden on a single box."""
        panel = self.query_one("#hive-nodes", Static)
        nodes = s.nodes or []
        panel.display = len(nodes) > 1
        if len(nodes) <= 1:
            return
        table = Table(box=None, padding=(0, 1), header_style="bold", title=f"Cluster: {len(nodes)} nodes")
        for column in ("node", "url", "state", "last beat", "slots", "queue", "tok/s"):
            table.add_column(column, justify="right" if column in ("slots", "queue", "tok/s") else "left")
        colour = {"up": "green", "down": "bold red", "stopped": "dim"}
        for n in nodes:
            table.add_row(
                ("* " if n.this_node else "  ") + n.id,
                n.url,
                Text(n.state, style=colour.get(n.state, "")),
                f"{n.heartbeat_age_seconds:.0f} s ago",
                f"{n.slots_busy}/{n.slots_total}",
                str(n.queue_depth),
                f"{n.tokens_per_second:,.1f}",
            )
        panel.update(table)
