"""The config's JVM settings for shell scripts.

packages, excludes, master, driver-memory, driver-java-options, lakehouse, spark-defaults (the
  path of the spark-defaults.conf spark-submit reads): print that setting.
submit-packages: the packages spark-submit still needs as --packages: none when set-up has
  written them as local jars into spark-defaults.conf, else all of them.
jars-inputs: what set-up's jar step needs, one per line (one interpreter start, not four):
  excludes, the launch settings (driver memory, then driver Java options), the
  spark-defaults.conf path, submit-packages.
class-sharing-classpath, class-sharing-option: the driver classpath and the Java option of
  set-up's class data sharing archive (scripts/class_archive.py); empty without a current one.
submit-inputs: what scripts/spark_submit.sh needs, one per line (one start, not seven):
  submit-packages, excludes, master, driver-memory, driver-java-options, then the two
  class-sharing lines.
write-spark-defaults --classpath FILE: write the jars of a Maven classpath (comma-separated,
  as `mvn dependency:build-classpath` wrote it, excludes already applied) as spark.jars into
  the spark-defaults.conf that spark-submit reads, leaving out jars Spark already ships, and
  the config's spark.driver.memory and spark.driver.extraJavaOptions (launch-time settings)
  when it sets them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from adlake.config import AppConfig, load_config
from adlake.session import (
    class_sharing,
    launch_settings,
    packages_configured_as_jars,
    read_spark_defaults,
    render_spark_defaults,
    spark_defaults_path,
    spark_home,
)

# artifact-1.2.3.jar -> artifact (versions start with a digit after the last '-<digit>').
_ARTIFACT = re.compile(r"^(?P<artifact>.+?)-\d[^/]*\.jar$")


def _artifact(jar: str) -> str:
    match = _ARTIFACT.match(Path(jar).name)
    return match.group("artifact") if match else Path(jar).name


def jars_to_add(classpath: list[str], shipped: list[str]) -> list[str]:
    """The classpath's jars minus artifacts Spark already ships (any version): one copy of
    each on the classpath, Spark's own (as Spark's package resolution does for its modules
    and scala-library)."""
    have = {_artifact(j) for j in shipped}
    return [j for j in classpath if _artifact(j) not in have]


def _submit_packages(packages: tuple[str, ...]) -> str:
    configured = packages_configured_as_jars(packages, read_spark_defaults(spark_defaults_path()))
    return "" if configured else ",".join(packages)


def _sharing() -> tuple[str, str]:
    sharing = class_sharing()
    return ("", "") if sharing is None else (sharing.classpath, sharing.java_option)


# One printed setting each; the composite commands below print several, one line each.
SETTINGS: dict[str, Callable[[AppConfig], str]] = {
    "packages": lambda cfg: ",".join(cfg.jvm.packages),
    "excludes": lambda cfg: ",".join(cfg.jvm.excludes),
    "master": lambda cfg: cfg.spark.master or "",
    "driver-memory": lambda cfg: cfg.spark.conf.get("spark.driver.memory", ""),
    "driver-java-options": lambda cfg: cfg.spark.conf.get("spark.driver.extraJavaOptions", ""),
    "lakehouse": lambda cfg: cfg.paths.lakehouse,
    "submit-packages": lambda cfg: _submit_packages(cfg.jvm.packages),
    "spark-defaults": lambda cfg: str(spark_defaults_path()),
    "class-sharing-classpath": lambda cfg: _sharing()[0],
    "class-sharing-option": lambda cfg: _sharing()[1],
}
# Lines of settings (space-separated within a line) for one interpreter start per script.
COMPOSITES: dict[str, tuple[tuple[str, ...], ...]] = {
    "jars-inputs": (
        ("excludes",),
        ("driver-memory", "driver-java-options"),
        ("spark-defaults",),
        ("submit-packages",),
    ),
    "submit-inputs": (
        ("submit-packages",),
        ("excludes",),
        ("master",),
        ("driver-memory",),
        ("driver-java-options",),
        ("class-sharing-classpath",),
        ("class-sharing-option",),
    ),
}


def _write_spark_defaults(cfg: AppConfig, classpath_file: Path) -> Path:
    classpath = [j for j in classpath_file.read_text(encoding="utf-8").strip().split(",") if j]
    shipped = [p.name for p in (spark_home() / "jars").glob("*.jar")]
    jars = jars_to_add(classpath, shipped)
    target = spark_defaults_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    existing = target.read_text(encoding="utf-8") if target.is_file() else ""
    target.write_text(render_spark_defaults(existing, jars, launch_settings(cfg)), encoding="utf-8")
    if not packages_configured_as_jars(cfg.jvm.packages, read_spark_defaults(target)):
        raise SystemExit(f"{target}: a jar of {cfg.jvm.packages} is missing from {jars}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=[*SETTINGS, *COMPOSITES, "write-spark-defaults"])
    parser.add_argument("--config", default=None)
    parser.add_argument("--classpath", type=Path, help="write-spark-defaults: the Maven classpath")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.what == "write-spark-defaults":
        if args.classpath is None:
            parser.error("write-spark-defaults needs --classpath")
        print(_write_spark_defaults(cfg, args.classpath))
    elif args.what in COMPOSITES:
        for line in COMPOSITES[args.what]:
            print(" ".join(SETTINGS[name](cfg) for name in line))
    else:
        print(SETTINGS[args.what](cfg))


if __name__ == "__main__":
    main()
