"""Print the config's JVM settings for shell scripts: `packages`, `excludes` or `master`."""

from __future__ import annotations

import argparse

from adlake.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["packages", "excludes", "master", "driver-memory"])
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.what == "packages":
        print(",".join(cfg.jvm.packages))
    elif args.what == "excludes":
        print(",".join(cfg.jvm.excludes))
    elif args.what == "master":
        print(cfg.spark.master or "")
    else:
        print(cfg.spark.conf.get("spark.driver.memory", ""))


if __name__ == "__main__":
    main()
