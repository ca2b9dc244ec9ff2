//! What a click's user agent says: device type, browser, OS, and whether it is a bot.
//!
//! Deliberately a short ordered list of substring rules rather than a full UA database:
//! it runs on every redirect inside the edge's CPU budget, and analytics need families
//! (Chrome, Safari, iOS), not versions. Order matters where agents borrow each other's
//! tokens (Edge and Opera say "Chrome", Chrome says "Safari", iPad may say "Macintosh").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Ios,
    Android,
    Desktop,
    /// No user agent, or one that is no browser.
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Ios => "ios",
            Device::Android => "android",
            Device::Desktop => "desktop",
            Device::Other => "other",
        }
    }
}

/// Crawlers, link-preview fetchers and HTTP libraries; lower-case substrings.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "quora link preview",
    "whatsapp",
    "telegram",
    "skypeuripreview",
    "vkshare",
    "pinterest",
    "bitlypreview",
    "outbrain",
    "iframely",
    "headlesschrome",
    "phantomjs",
    "lighthouse",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "libwww-perl",
    "httpclient",
    "scrapy",
    "preview",
];

/// Whether the agent is automated. An empty agent counts as a bot: browsers always send one.
pub fn is_bot(user_agent: &str) -> bool {
    if user_agent.trim().is_empty() {
        return true;
    }
    let lower = user_agent.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|marker| lower.contains(marker))
}

pub fn device(user_agent: &str) -> Device {
    match os(user_agent) {
        "iOS" => Device::Ios,
        "Android" => Device::Android,
        "Windows" | "macOS" | "Linux" | "ChromeOS" => Device::Desktop,
        _ => Device::Other,
    }
}

pub fn os(user_agent: &str) -> &'static str {
    if user_agent.contains("iPhone") || user_agent.contains("iPad") || user_agent.contains("iPod") {
        "iOS"
    } else if user_agent.contains("Android") {
        "Android"
    } else if user_agent.contains("Windows") {
        "Windows"
    } else if user_agent.contains("CrOS") {
        "ChromeOS"
    } else if user_agent.contains("Mac OS X") || user_agent.contains("Macintosh") {
        "macOS"
    } else if user_agent.contains("Linux") || user_agent.contains("X11") {
        "Linux"
    } else {
        "Other"
    }
}

pub fn browser(user_agent: &str) -> &'static str {
    const RULES: &[(&str, &str)] = &[
        ("Edg/", "Edge"),
        ("EdgA/", "Edge"),
        ("EdgiOS/", "Edge"),
        ("OPR/", "Opera"),
        ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ];
    RULES.iter().find(|(token, _)| user_agent.contains(token)).map_or("Other", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0";
    const FIREFOX_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0";

    #[test]
    fn families_of_common_agents() {
        assert_eq!((device(IPHONE), os(IPHONE), browser(IPHONE)), (Device::Ios, "iOS", "Safari"));
        assert_eq!((device(PIXEL), os(PIXEL), browser(PIXEL)), (Device::Android, "Android", "Chrome"));
        assert_eq!((device(EDGE_WIN), os(EDGE_WIN), browser(EDGE_WIN)), (Device::Desktop, "Windows", "Edge"));
        assert_eq!((device(FIREFOX_MAC), os(FIREFOX_MAC), browser(FIREFOX_MAC)), (Device::Desktop, "macOS", "Firefox"));
        assert_eq!(device(""), Device::Other);
    }

    #[test]
    fn bots_and_previews_are_flagged_browsers_are_not() {
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "WhatsApp/2.23.20.0",
            "curl/8.5.0",
            "",
        ] {
            assert!(is_bot(agent), "{agent}");
        }
        for agent in [IPHONE, PIXEL, EDGE_WIN, FIREFOX_MAC] {
            assert!(!is_bot(agent), "{agent}");
        }
    }
}
