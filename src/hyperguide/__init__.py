"""hyperguide"""
