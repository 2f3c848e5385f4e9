"""Eval-gated GitOps promotion between stages (`aistack init-gitops`, `aistack promote`).

Lives under the CLI because it is the one package allowed to depend on everything: the API
contract (config hash, conventions), MLflow, git and kustomize.
"""
