"""Operations over every layer: table maintenance (OPTIMIZE, VACUUM) and run summaries."""
