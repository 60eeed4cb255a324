"""Placeholder for the dashboard routes (written by another engineer)."""

from fastapi import APIRouter

router = APIRouter()
