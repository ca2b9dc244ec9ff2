//! `GET /v1/links/{id}/qr`: the link's short URL as a QR code, SVG or PNG.
//!
//! Error correction level M (15 % of the code may be damaged or covered) and the quiet zone
//! of four modules the standard asks for, so printed codes scan reliably. PNGs are 1-bit
//! grayscale: a few hundred bytes, crisp at any scale.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use qrcode::{Color, EcLevel, QrCode};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::api::LinkReaders;
use crate::error::{ApiError, ApiQuery, FieldError, Problem};
use crate::keys::Authorized;
use crate::state::AppState;

const QUIET_ZONE: usize = 4;

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    #[default]
    Svg,
    Png,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QrParams {
    /// `svg` (default) or `png`.
    #[param(inline)]
    format: Option<Format>,
    /// Pixels per module for PNG, 1 to 32 (default 8); SVG scales freely.
    #[param(minimum = 1, maximum = 32)]
    scale: Option<u32>,
}

/// The QR code of a link's short URL.
#[utoipa::path(
    get, path = "/v1/links/{id}/qr", tag = "links",
    params(("id" = String, Path, description = "Link id (`lnk_…`)"), QrParams),
    security(("admin_key" = ["admin", "read", "links:write"])),
    responses(
        (status = 200, description = "An SVG or PNG image", content(("image/svg+xml"), ("image/png"))),
        (status = 401, description = "Missing or invalid key", body = Problem),
        (status = 403, description = "Key lacks the scope", body = Problem),
        (status = 404, description = "No such link", body = Problem),
        (status = 422, description = "Bad format or scale", body = Problem),
    )
)]
pub(crate) async fn link_qr(
    State(state): State<AppState>,
    _: Authorized<LinkReaders>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<QrParams>,
) -> Result<Response, ApiError> {
    let scale = params.scale.unwrap_or(8);
    if !(1..=32).contains(&scale) {
        return Err(ApiError::validation(vec![FieldError {
            field: "scale".into(),
            message: "must be 1 to 32".into(),
        }]));
    }
    let mut conn = state.db.pool().acquire().await?;
    let link = super::api::load(&mut conn, &id, &super::ShortUrls::of(&state.config)).await?;
    let code = QrCode::with_error_correction_level(link.short_url.as_bytes(), EcLevel::M)
        .map_err(|err| ApiError::internal(format!("QR for {}: {err}", link.short_url)))?;
    let (content_type, body) = match params.format.unwrap_or_default() {
        Format::Svg => ("image/svg+xml", svg(&code).into_bytes()),
        Format::Png => ("image/png", png(&code, scale as usize)?),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn svg(code: &QrCode) -> String {
    code.render::<qrcode::render::svg::Color<'_>>().quiet_zone(true).min_dimensions(256, 256).build()
}

/// Dark modules as 0 (black), light as 1, with the quiet zone, `scale` pixels per module.
fn png(code: &QrCode, scale: usize) -> Result<Vec<u8>, ApiError> {
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * scale;
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0xffu8; row_bytes * side];
    for y in 0..modules {
        for x in 0..modules {
            if colors[y * modules + x] != Color::Dark {
                continue;
            }
            for py in (y + QUIET_ZONE) * scale..(y + QUIET_ZONE + 1) * scale {
                for px in (x + QUIET_ZONE) * scale..(x + QUIET_ZONE + 1) * scale {
                    pixels[py * row_bytes + px / 8] &= !(0x80 >> (px % 8));
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let fail = |err: png::EncodingError| ApiError::internal(format!("PNG encoding: {err}"));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}
