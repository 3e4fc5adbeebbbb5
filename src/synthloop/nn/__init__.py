"""Neural models in torch (the optional ``synthloop[nn]`` extra); import submodules directly."""
