"""A learned score mix in a notebook: its weights as a bar chart beside the table, and how it was checked.

    from widgets.mixview import mix_view
    mix_view(mix)            # a mix from workbench.papers.mixing.learn_mix or workbench.papers.proxymix.learn_mix_proxy
"""
from __future__ import annotations

import html

import ipywidgets as W
import plotly.graph_objects as go


def weights_figure(mix) -> go.Figure:
    """Weights per standard deviation, one bar per column (positive: the mix rewards the column)."""
    t = mix.table()
    colors = ["#2b8a3e" if w >= 0 else "#c92a2a" for w in t["weight_per_sd"]]
    fig = go.Figure(go.Bar(x=t["weight_per_sd"].to_list(), y=t["column"].to_list(), orientation="h",
                           marker_color=colors, hovertemplate="%{y}: %{x:+.3f} per sd<extra></extra>"))
    fig.update_layout(height=80 + 28 * len(t), margin=dict(l=10, r=10, t=30, b=30),
                      title="mix weight per standard deviation", xaxis_zeroline=True)
    fig.update_yaxes(autorange="reversed")
    return fig


def check_html(mix) -> str:
    """One paragraph: the cross-validated AUC (labels) or the held-out zero-shot check (proxy)."""
    p, cv = mix.proxy, mix.cv
    if p:
        return (f"<p>Learned with the FLYT objective on {p['heldout']:,} held-out images of {p['classes']} classes "
                f"({p['pool_rows']:,} pool rows, {p['steps']} steps). On the {p['check']:,} held-out images it never "
                f"used: zero-shot loss after one step on uniform weights <b>{p['check_loss_uniform']:.4f}</b>, on the "
                f"mix's weights <b>{p['check_loss_mix']:.4f}</b> (before any step: {p['check_loss_reference']:.4f}); "
                f"accuracy {100 * p['check_accuracy_uniform']:.1f}% vs {100 * p['check_accuracy_mix']:.1f}%.</p>")
    if "auc_mean" in cv:
        return (f"<p>Learned from {cv['labelled']:,} labelled rows ({cv['positives']:,} positive): cross-validated "
                f"AUC <b>{cv['auc_mean']:.3f}</b> &plusmn; {cv['auc_std']:.3f} over {cv['folds']} folds.</p>")
    return f"<p>Learned from {html.escape(str(cv.get('labelled', '?')))} labelled rows (too few for cross-validation).</p>"


def mix_view(mix) -> W.VBox:
    return W.VBox([W.HTML(mix._repr_html_() + check_html(mix)), go.FigureWidget(weights_figure(mix))])
