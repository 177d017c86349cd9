"""Latency drill-down (being written)."""

import streamlit as st

st.title("Latency")
