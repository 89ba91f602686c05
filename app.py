"""VAE latent-space explorer: page config, navigation, the sidebar's model picker, then the page."""

import streamlit as st

from vae_app.widgets import model_picker

st.set_page_config(page_title="VAE latent-space explorer", page_icon=":material/blur_on:", layout="wide")

VIEWS = "vae_app/views"
PAGES = {
    "Explore": [
        st.Page(f"{VIEWS}/home.py", title="Home", icon=":material/home:", default=True),
        st.Page(f"{VIEWS}/train.py", title="Train", icon=":material/model_training:"),
        st.Page(f"{VIEWS}/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
        st.Page(f"{VIEWS}/decode.py", title="Decode", icon=":material/tune:"),
        st.Page(f"{VIEWS}/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
        st.Page(f"{VIEWS}/directions.py", title="Attribute vectors", icon=":material/trending_flat:"),
        st.Page(f"{VIEWS}/generate.py", title="Generate by class", icon=":material/auto_awesome:"),
        st.Page(f"{VIEWS}/encode.py", title="Encode", icon=":material/upload:"),
    ],
    "Insight": [
        st.Page(f"{VIEWS}/health.py", title="Latent health", icon=":material/monitor_heart:"),
        st.Page(f"{VIEWS}/traversals.py", title="Traversals", icon=":material/view_module:"),
        st.Page(f"{VIEWS}/timeline.py", title="Training timeline", icon=":material/animation:"),
        st.Page(f"{VIEWS}/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page(f"{VIEWS}/compare.py", title="Compare", icon=":material/compare:"),
        st.Page(f"{VIEWS}/export.py", title="Export", icon=":material/download:"),
    ],
}

# expanded: show all fourteen pages; collapsed, Streamlit hides the last ones behind "View 4 more".
page = st.navigation(PAGES, expanded=True)
model_picker()
page.run()
