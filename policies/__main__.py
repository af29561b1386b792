"""Entry point the Pulumi analyzer host runs (`runpy.run_path(<pack dir>, run_name="__main__")`).

PolicyPack(...) starts a gRPC server and never returns, so it is built only when run as the pack;
importing this file (tests, tools) does nothing. Rules live in `platform_infra.policies.rules`.
"""

if __name__ == "__main__":
    from pulumi_policy import PolicyPack

    from platform_infra.policies.pack import pack_arguments

    PolicyPack(**pack_arguments())
