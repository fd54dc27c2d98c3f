#!/usr/bin/env bash
# Regenerates every file in benchmarks/results/ (the README and docs/RESULTS.md quote them), one
# benchmark at a time; run it on an otherwise idle machine. Each benchmark writes its own
# results/NAME.txt (what it prints) and NAME.json (its figures, where it has any) via --out.
#
# Takes about 30 min on an idle 2-core machine (no GPU), about 1 h when the cores are shared. Idle
# timings measured: bench_reid --skip-omz 2 min (its four runs ~8 min), bench_attributes 4 min (it
# fits a head on 0277 embeddings of 16.6k images; 9 min on a busy machine), bench_maps 2 min,
# bench_explain_quality 1 min, mimic_gap 1.3 min, bench_large_gallery 1 min, bench_explain_speed
# 10 s, bench_match_calibration 23 s with its embeddings cached (about 9 min without); estimated:
# bench_backends ~5 min, bench_precision ~4 min, bench_query_check ~2 min, bench_train_step ~5 min
# with the subnormal runs.
#
# Usage: benchmarks/run_all.sh [DATA_ROOT]   (default: $XREID_DATA_ROOT, else ~/.cache/xreid)
# Needs the Open Model Zoo models in ../shared/models/openvino (or $XREID_SHARED/models/openvino), and
# for train_step_subnormals a training checkpoint: $XREID_TRAINED (default runs/peta_mobilenetv2_cj/last.pt,
# from `xreid train`); without it that file is left as it was and the run ends with an error saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results
data=()
if [ $# -ge 1 ]; then data=(--data-root "$1"); fi
trained="${XREID_TRAINED:-runs/peta_mobilenetv2_cj/last.pt}"
shared="${XREID_SHARED:-../shared}/models/openvino"
mkdir -p "$out"
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT

run() { echo "== $*" >&2; "$@"; }

run python benchmarks/bench_reid.py ${data[@]+"${data[@]}"} --skip-omz --out "$out/reid_default"
run python benchmarks/bench_reid.py ${data[@]+"${data[@]}"} --only-omz --no-throughput --out "$out/reid_omz_accuracy"
run python benchmarks/bench_reid.py ${data[@]+"${data[@]}"} --only-omz --no-accuracy --out "$out/reid_omz_speed"
run python benchmarks/bench_reid.py ${data[@]+"${data[@]}"} --no-accuracy --out "$out/reid_speed_all"
run python benchmarks/bench_backends.py ${data[@]+"${data[@]}"} --out "$out/backends"
run python benchmarks/bench_precision.py ${data[@]+"${data[@]}"} --out "$out/precision"
run python benchmarks/bench_attributes.py ${data[@]+"${data[@]}"} --refit --out "$out/attributes"
run python benchmarks/bench_explain_quality.py ${data[@]+"${data[@]}"} --out "$out/explain_quality"
# OMZ 0277 with its own head (fitted into runs/heads/ by bench_attributes above)
run python benchmarks/bench_explain_quality.py ${data[@]+"${data[@]}"} --model "$shared/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml" \
    --head runs/heads/head_0277.npz --out "$out/explain_quality_0277"
# the distilled interpreter of the bundled model and of 0277 (fitted into runs/interpreters/ when absent,
# ~10 min each on a busy machine; reused when present)
run python benchmarks/bench_interpreter.py ${data[@]+"${data[@]}"} --out "$out/interpreter"
run python benchmarks/bench_explain_speed.py --out "$out/explain_speed"
# attribute fusion (ACRN's table): embeddings cached in runs/fusion_cache (0277, 0286, 0287, bundled)
run python benchmarks/bench_fusion.py ${data[@]+"${data[@]}"} --out "$out/fusion"
# ACRN training of the own CNN against the same recipe without the complementary loss: needs the two runs
# (docs/RESULTS.md#acrn-training: two `xreid train` commands, about 40 min each on 1 core)
if [ -f runs/acrn/acrn_e16/model.pt ] && [ -f runs/acrn/acrn_off_e16/model.pt ]; then
    run python benchmarks/bench_acrn.py ${data[@]+"${data[@]}"} --out "$out/acrn"
else
    echo "runs/acrn/acrn_e16 or acrn_off_e16 not trained (docs/RESULTS.md#acrn-training): acrn not regenerated" >&2
fi
if [ -f runs/acrn/acrn_e16_s1/model.pt ] && [ -f runs/acrn/acrn_off_e16_s1/model.pt ]; then  # the second seed
    run python benchmarks/bench_acrn.py ${data[@]+"${data[@]}"} --acrn runs/acrn/acrn_e16_s1/model.pt \
        --baseline runs/acrn/acrn_off_e16_s1/model.pt --out "$out/acrn_s1"
else
    echo "runs/acrn/acrn_e16_s1 or acrn_off_e16_s1 not trained (--set seed=1): acrn_s1 not regenerated" >&2
fi
run python benchmarks/bench_query_check.py ${data[@]+"${data[@]}"} --out "$out/query_check"
# map variants of the bundled model: chosen on PETA-ReID-val (30 + 30 pairs; --record writes the model's
# map-quality record, src/xreid/weights/default_map_quality.json), reported on 100 test pairs (two runs of 50, merged)
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --protocol peta-reid-val --pairs 30 --maps all \
    --joint gc-pair5,gc-sim,gxa-sim --occlusion-model none --no-attributes --out "$out/maps_variants_val"
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --protocol peta-reid-val --pairs 30 --start 30 \
    --maps occ-grey,gc-pair5,attention --occlusion-model none --no-attributes --out "$out/maps_val_30"
run python benchmarks/bench_maps.py --merge "$out/maps_variants_val.json" "$out/maps_val_30.json" \
    --record --model default --protocol peta-reid-val --out "$out/maps_val"
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --protocol peta-reid-val --pairs 10 \
    --maps oracle-greedy,occ-grey --occlusion-model none --no-attributes --out "$out/maps_oracle_val"
maps=occ-grey,gc-pair5,attention,occ-grey-parts,gc-branches,gc-sim
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 50 --start 0 --maps $maps --no-attributes \
    --out "$out/maps_test_0"
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 50 --start 50 --maps $maps --no-attributes \
    --out "$out/maps_test_50"
run python benchmarks/bench_maps.py --merge "$out/maps_test_0.json" "$out/maps_test_50.json" --out "$out/maps"
# attribute maps on 100 pairs, for the ablation table of docs/RESULTS.md#multi-task-training-issue-17: the bundled
# AANet model, then the validation-list runs of configs/peta_mobilenetv2_multitask.yaml and _aanet.yaml when trained
run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 100 --only attribute --out "$out/maps_attribute_default"
if [ -f runs/multitask/peta_mobilenetv2_multitask/model.pt ]; then
    run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 100 --only attribute \
        --model runs/multitask/peta_mobilenetv2_multitask/model.pt --out "$out/maps_attribute_multitask"
else
    echo "runs/multitask/peta_mobilenetv2_multitask not trained: maps_attribute_multitask not regenerated" >&2
fi
if [ -f runs/aanet/aanet_val/model.pt ]; then  # the validation-list run: Grad-CAM and its own CAMs
    run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 100 --only attribute \
        --model runs/aanet/aanet_val/model.pt --out "$out/maps_attribute_aanet"
else
    echo "runs/aanet/aanet_val not trained (configs/peta_mobilenetv2_aanet.yaml header): maps_attribute_aanet not regenerated" >&2
fi
run python benchmarks/bench_large_gallery.py --out "$out/large_gallery"
# The index benchmarks below ran before the random rotation of the codes (xreid.index.ann.ROTATE, session 11)
# unless their comment says otherwise; they now build rotated codes (--rotation off, where a script has it,
# builds as they did)
run python benchmarks/bench_index.py ${data[@]+"${data[@]}"} --out "$out/index"
# the library's index only, since the scan floor, without the build's 1M-row look-alike pass
run python benchmarks/bench_index.py ${data[@]+"${data[@]}"} --candidates xreid --skip-lookalikes --out "$out/index_floor"
run python benchmarks/bench_sharded.py --images --out "$out/sharded"
# the scale curve at 256-d (OMZ 0277's and the compact model's dimension), 10,000 to 1,000,000 rows, builds
# without the look-alike pass (about 5 min, 7 GB of RAM)
run python benchmarks/bench_sharded.py --sizes 10000 100000 1000000 --dim 256 --skip-lookalikes --images \
    --out "$out/sharded_256"
# 1,000,000 rows at the compact default's 512-d, 1 and 4 shards (about 4 min, 6 GB)
run python benchmarks/bench_sharded.py --sizes 1000000 --shards 1 4 --dim 512 --skip-lookalikes --images --out "$out/sharded_512"
# 10,000,000 rows at 256-d in 4 shards, their vectors memory-mapped (about 8-12 min, 11.7 GB peak while a
# shard's segments merge, 21 GB of temporary disk), searched with the default floor and the tuning alone
run python benchmarks/bench_sharded.py --sizes 10000000 --shards 4 --dim 256 --queries 100 --skip-lookalikes \
    --floors 1 0 --images --out "$out/sharded_10m"
# the same with codes half the size (4 dims per 4-bit code; about 12 min): faster, recall at its floor
run python benchmarks/bench_sharded.py --sizes 10000000 --shards 4 --dim 256 --queries 100 --skip-lookalikes \
    --floors 1 --dims-per-code 4 --images --out "$out/sharded_10m_pq4"
# faiss's scan kernels for one query and for a batch, and two scans at once (about 4 min, 3 GB)
run python benchmarks/bench_scan_kernel.py --out "$out/scan_kernel"
# half-size codes against the default on copies of one 2,500,000-row shard, 4 shards in 2 threads (about
# 1.5 min, 4 GB); the sharded search's thread set-up against the one before it, each arm in its own process
# (about 4 min); both recorded before the rotation, so their arms are ':plain'
run python benchmarks/bench_code_size.py --arms 2:200:plain 4:1600:plain 4:3200:plain --out "$out/code_size"
run python benchmarks/bench_code_size.py --rows 1000000 --arms 2:200:plain 2:200:before:plain 2:1600:plain \
    2:1600:before:plain 4:3200:plain 4:3200:before:plain --processes 2 --out "$out/shard_threads"
# the random rotation before the codes against none, same shard and threads (about 2 min, 5 GB)
run python benchmarks/bench_code_size.py --arms 2:200:plain 2:400:plain 2:200 4:400 4:800 --out "$out/code_size_rotation"
# and at the bundled model's 3,072-d, 60,000 rows a shard (where a query reads a 38 MB rotation; about 1 min)
run python benchmarks/bench_code_size.py --rows 60000 --dim 3072 --queries 60 --arms 2:200:plain 2:200 \
    --out "$out/code_size_rotation_3072"
# Ray's overhead (one process and a local 2-node cluster interleaved; about 10 min)
run python benchmarks/bench_sharded.py --sizes --out "$out/sharded_ray"
# issue 30's compact AANet, cross-domain run (configs/peta_mobilenetv2_aanet_compact.yaml header), when trained:
# its explanations on test, as an attribute source for description search, its maps on validation pairs
X=runs/aanet_compact/aanet_compact_xdomain
if [ -f $X/model.pt ]; then
    run python benchmarks/bench_explain_quality.py ${data[@]+"${data[@]}"} --model $X/model.pt --head $X/model_head.npz \
        --out "$out/explain_quality_compact_xdomain"
    run python benchmarks/bench_describe.py ${data[@]+"${data[@]}"} --sources concat --source-model compact=$X/model.pt \
        --out "$out/describe_sources_compact"
    run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --protocol peta-reid-val --pairs 30 \
        --maps occ-grey,gc-pair5,attention --occlusion-model none --no-attributes --model $X/model.pt \
        --out "$out/maps_compact_val"
    run python benchmarks/bench_maps.py ${data[@]+"${data[@]}"} --pairs 100 --maps occ-grey,gc-pair5,attention \
        --occlusion-model none --no-attributes --model $X/model.pt --out "$out/maps_compact_test"
else
    echo "$X not trained: explain_quality_compact_xdomain, describe_sources_compact, maps_compact_val / _test not regenerated" >&2
fi
# the same recipe in domain (configs/peta_mobilenetv2_aanet_compact.yaml as committed), when trained: its explanations on test
Y=runs/aanet_compact/peta_mobilenetv2_aanet_compact
if [ -f $Y/model.pt ]; then
    run python benchmarks/bench_explain_quality.py ${data[@]+"${data[@]}"} --model $Y/model.pt --head $Y/model_head.npz \
        --out "$out/explain_quality_compact_indomain"
else
    echo "$Y not trained: explain_quality_compact_indomain not regenerated" >&2
fi
# the distractor test on PETA-ReID (embeddings cached in runs/embedding_cache; about 15 min, 6 GB of RAM),
# the bundled model (3,072-d) up to 300,000 distractors (1,000,000 would need 12.3 GB), with the index's
# search also at scan floor 0 (the build's tuning alone)
run python benchmarks/bench_distractors.py ${data[@]+"${data[@]}"} --levels 0 10000 100000 300000 --real 0 \
    --floors 0 --exact-timed 0 --out "$out/distractors"
# the ANN's scan floor chosen on PETA-ReID-val with OMZ 0277 (256-d): floors 0 to 1 at 100,000 to
# 1,000,000 distractors (about 6 min, 5.5 GB of RAM; embeddings cached in runs/embedding_cache)
run python benchmarks/bench_distractors.py ${data[@]+"${data[@]}"} --protocol peta-reid-val \
    --model "$shared/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml" \
    --levels 100000 300000 1000000 --real 0 --floors 0 0.0625 0.125 0.25 0.5 1 --exact-timed 20 \
    --out "$out/distractors_val_0277"
# the ANN's codes chosen on PETA-ReID-val with OMZ 0277 and k = 10 (the rule: the smallest codes losing
# under 0.5 mAP@10 at every level): 2 or 4 dims per 4-bit code, with and without the random rotation
# (about 4 min each, 5.5 GB of RAM)
codes_val=(${data[@]+"${data[@]}"} --protocol peta-reid-val --levels 300000 1000000 --real 0 --exact-timed 5 --k 10
    --model "$shared/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml")
run python benchmarks/bench_distractors.py "${codes_val[@]}" --rotation off --dims-per-code 2 --out "$out/distractors_val_codes_off2"
run python benchmarks/bench_distractors.py "${codes_val[@]}" --rotation on --dims-per-code 2 --out "$out/distractors_val_codes_on2"
run python benchmarks/bench_distractors.py "${codes_val[@]}" --rotation on --dims-per-code 4 --out "$out/distractors_val_codes_on4"
run python benchmarks/bench_distractors.py "${codes_val[@]}" --rotation off --dims-per-code 4 --out "$out/distractors_val_codes_off4"
# the chosen codes (rotated, 2 dims per code) reported once on PETA-ReID test, k = 10 (about 3 min)
run python benchmarks/bench_distractors.py ${data[@]+"${data[@]}"} --protocol peta-reid --levels 300000 1000000 --real 0 \
    --exact-timed 5 --k 10 --model "$shared/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml" \
    --out "$out/distractors_codes_0277"
# and PETA-ReID test with the chosen floor, 0 to 1,000,000 distractors (about 8 min, 5.5 GB of RAM)
run python benchmarks/bench_distractors.py ${data[@]+"${data[@]}"} --protocol peta-reid \
    --model "$shared/person-reidentification-retail-0277/FP16/person-reidentification-retail-0277.xml" \
    --levels 0 10000 100000 300000 1000000 --real 0 --floors 0 --exact-timed 20 --out "$out/distractors_0277"
# the same at 100,000 and 300,000 distractors with the index's search at other nprobe values (about 20 min)
run python benchmarks/bench_distractors.py ${data[@]+"${data[@]}"} --levels 100000 300000 --real 0 --sweep 4 16 64 128 \
    --out "$out/distractors_nprobe"
run python benchmarks/bench_match_calibration.py ${data[@]+"${data[@]}"} --out "$out/match_calibration"
run python benchmarks/bench_serve.py ${data[@]+"${data[@]}"} --out "$out/serve"
run python benchmarks/bench_case_session.py --out "$out/case_session"
run python benchmarks/bench_describe.py ${data[@]+"${data[@]}"} --out "$out/describe"
run python benchmarks/bench_describe_variants.py ${data[@]+"${data[@]}"} --out "$out/describe_variants"
# the description search's attribute source: the OMZ layers compared on PETA-ReID-val, the chosen one on test (about
# 6 min with the embeddings cached in the default describe_cache; 30 min to embed them), and the variants not kept
run python benchmarks/bench_describe.py ${data[@]+"${data[@]}"} --sources 0277 0286 0287 concat mean best \
    --out "$out/describe_sources"
run python benchmarks/bench_describe_source_variants.py ${data[@]+"${data[@]}"} --out "$out/describe_source_variants"
# the soak as recorded (a short one; the issue-29 target is --rows 100000 --real 19000 --clients 16 --seconds 1200)
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} --rows 2000 --real 300 --clients 4 --seconds 600 \
    --warmup 120 --out "$out/soak_short"
# the issue's soak as large as recorded (100,000 rows of which 5,000 real crops, 16 clients, 20 min)
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} --rows 100000 --real 5000 --clients 16 --seconds 1200 \
    --warmup 300 --trace --out "$out/soak_full"
# the server's memory changes, before (the library at commit 3d153e3) and after, side by side (both at once),
# with the one-of-each warm-up and without it
before=$(mktemp -d)
git archive 3d153e3 src | tar -x -C "$before"
ab=(--rows 2000 --real 300 --clients 4 --seconds 360 --warmup 120 --trace)
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} "${ab[@]}" --server-src "$before/src" --out "$out/soak_ab_before" &
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} "${ab[@]}" --out "$out/soak_ab_after"
wait
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} "${ab[@]}" --lazy-warmup --server-src "$before/src" \
    --out "$out/soak_ab_lazywarmup_before" &
run python benchmarks/bench_soak.py ${data[@]+"${data[@]}"} "${ab[@]}" --lazy-warmup --out "$out/soak_ab_lazywarmup_after"
wait
rm -rf "$before"
run python benchmarks/mimic_gap.py ${data[@]+"${data[@]}"} --out "$out/mimic_gap"
run python benchmarks/bench_train_step.py --out "$out/train_step"
# the footage thresholds on the bundled model's cosine scale: a 3 x 3 grid on frames 1-400 (about 5 min)
run python benchmarks/bench_footage_grid.py --out "$out/footage_grid"
run python benchmarks/bench_footage.py --out "$out/footage"
# memory and case size over a long input: the video looped 12 times (15.9 min of footage) at stride 3, as
# recorded (about 25 min on a busy machine); --loops 45 --stride 1 is the whole hour the issue names
run python benchmarks/bench_footage_hour.py --loops 12 --stride 3 --out "$out/footage_hour"
# the whole hour the issue names (about 20 min on 2 free cores)
run python benchmarks/bench_footage_hour.py --loops 45 --stride 1 --out "$out/footage_hour_full"
# xreid adapt (issue 30): its unlabeled input and the choice of its clustering, given a cross-domain model
xdomain="${XREID_XDOMAIN:-runs/xdomain_aug/peta_mobilenetv2_xdomain_aug/model.pt}"
if [ -f "$xdomain" ]; then
    run python benchmarks/adapt_list.py ${data[@]+"${data[@]}"} --out "$out/adapt_list.csv"
    run python benchmarks/adapt_cluster_check.py ${data[@]+"${data[@]}"} --model "$xdomain" --out "$out/adapt_cluster_check"
else
    echo "no cross-domain model $xdomain (set XREID_XDOMAIN): adapt_list, adapt_cluster_check not run" >&2
fi
# how long to adapt, chosen on validation, from the compact cross-domain model (about 30 min on 2 free cores)
compact="${XREID_COMPACT_XDOMAIN:-runs/aanet_compact/aanet_compact_xdomain/model.pt}"
if [ -f "$compact" ]; then
    rm -rf runs/adapt_length
    run python benchmarks/adapt_length.py ${data[@]+"${data[@]}"} --model "$compact" --stops 3 6 12 --batches 30 \
        --work runs/adapt_length --out "$out/adapt_length"
else
    echo "no compact cross-domain model $compact (set XREID_COMPACT_XDOMAIN): adapt_length not run" >&2
fi
# camera centring for any model (issue 30): its choices on validation and the chosen rule on test, with 0288 and
# 0277 (embeds 7,400 images per model: about 5 min for 0288 and 12 min for 0277 on 2 free cores)
run python benchmarks/bench_camera_centring.py ${data[@]+"${data[@]}"} --out "$out/camera_centring"
# statistics per appearance group for crops without cameras (issue 30), with the IBN-a + mixing cross-domain model
# (docs/RESULTS.md, Cameras never seen; about 5 min)
ibn="${XREID_IBN_XDOMAIN:-runs/aanet_compact/aanet_compact_xdomain_mix_ibn/model.pt}"
if [ -f "$ibn" ]; then
    run python benchmarks/bench_appearance_groups.py ${data[@]+"${data[@]}"} --model "$ibn" --out "$out/appearance_groups"
    # what it ranks with, chosen on validation, then test once for it (about 3 min each)
    xd=(--exclude VIPeR PRID GRID)
    chosen=(--protocol peta-reid --variants global all g+0.5:pca512:w0.1)
    run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$ibn" "${xd[@]}" --out "$out/descriptor_val_xdomain_mix_ibn"
    run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$ibn" "${xd[@]}" "${chosen[@]}" --out "$out/descriptor_test_xdomain_mix_ibn"
else
    echo "no IBN-a cross-domain model $ibn (set XREID_IBN_XDOMAIN): appearance_groups, descriptor_*_xdomain_mix_ibn not run" >&2
fi
# the same choice measured on the in-domain twin (docs/RESULTS.md#ranking-descriptor), and the bundled model's branches
ibn_in="${XREID_IBN_INDOMAIN:-runs/aanet_compact/aanet_compact_mix_ibn/model_full.pt}"  # the bundled network unprojected
if [ -f "$ibn_in" ]; then
    run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$ibn_in" --protocol peta-reid \
        --variants global all g+0.5:pca512:w0.1 --out "$out/descriptor_test_mix_ibn"
else
    echo "no IBN-a in-domain model $ibn_in (set XREID_IBN_INDOMAIN): descriptor_test_mix_ibn not run" >&2
fi
# the AANet default before the swap (issue 17): git show 3cd1105:src/xreid/weights/default.pt > runs/aanet_default_3072.pt
previous="${XREID_PREVIOUS_DEFAULT:-runs/aanet_default_3072.pt}"
if [ -f "$previous" ]; then
    run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$previous" --protocol peta-reid \
        --variants global all g+1 --out "$out/descriptor_test_default"
else
    echo "no $previous (set XREID_PREVIOUS_DEFAULT): descriptor_test_default not run" >&2
fi
# the in-domain choice (the same recipe trained on PETA-ReID-val's train list), then the compact pick on test for both twins
run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model runs/aanet_compact/aanet_compact_mix_ibn_val/model.pt --out "$out/descriptor_val_mix_ibn_val"
# how the 512 dims are laid out so the bias-free head holds (docs/RESULTS.md#projection-head; about 12 min)
run python benchmarks/bench_projection_head.py ${data[@]+"${data[@]}"} --model runs/aanet_compact/aanet_compact_mix_ibn_val/model.pt \
    --out "$out/projection_head_val"
# the second round: the attribute coordinates weighted (docs/RESULTS.md#projection-weight; about 8 min)
run python benchmarks/bench_projection_head.py ${data[@]+"${data[@]}"} --model runs/aanet_compact/aanet_compact_mix_ibn_val/model.pt \
    --variants attr+offset:0.3 "attr*1.5+offset:0.3" "attr*2+offset:0.3" "attr*3+offset:0.3" --out "$out/projection_weight_val"
run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$ibn_in" --protocol peta-reid --variants g+1:pca512 --out "$out/descriptor_test_mix_ibn_compact"
run python benchmarks/bench_descriptor.py ${data[@]+"${data[@]}"} --model "$ibn" --exclude VIPeR PRID GRID --protocol peta-reid --variants g+1:pca512 --out "$out/descriptor_test_xdomain_mix_ibn_compact"
# the mutation score of issue 34 (about 30 min on 2 cores; the modules and test files: mutation.py --list)
run python benchmarks/mutation.py --out "$out/mutation"
if [ -f "$trained" ]; then
    run python benchmarks/bench_train_step.py --trained "$trained" --runs 4 --out "$out/train_step_subnormals"
else
    echo "no training checkpoint $trained (set XREID_TRAINED): train_step_subnormals not regenerated" >&2
fi

# Every file kept in results/ must come from this run.
stale=$(find "$out" -type f ! -newer "$stamp")
if [ -n "$stale" ]; then
    echo "not regenerated by this run (add its command above, or delete it):" >&2
    echo "$stale" >&2
    exit 1
fi
