"""The pages' blueprint, its own module so every page module can register on it."""

from flask import Blueprint

bp = Blueprint("pages", __name__, template_folder="../templates")
